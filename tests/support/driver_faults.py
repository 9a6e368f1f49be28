"""Helpers of the fault tests that kill a sweep driver: the CLI as a subprocess, and killing it with its Ray.

A driver started with ``start_new_session=True`` leads a session that its private Ray's processes join;
Ray puts each worker (a trial) in a process group of its own, so killing the driver's process group
would leave the trials running. `kill_session` kills every process of the session at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.fs

from tune_jobs.trainable import checkpoint_epoch


def cli(*args: str) -> list[str]:
    """The `dense-reward` command line with this interpreter."""
    return [sys.executable, "-m", "tune_jobs.cli", *args]


def driver_env(**extra: str) -> dict[str, str]:
    """This environment for a driver subprocess: a private Ray with auth off, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "RAY_AUTH_MODE": "disabled", **extra}


def resume_sweep(run_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """``dense-reward sweep --resume --run-dir RUN_DIR`` in a new driver; asserts it exits 0 (its output if not)."""
    resumed = subprocess.run(
        cli("sweep", "--resume", "--run-dir", str(run_dir)),
        env=driver_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return resumed


def session_processes(session: int) -> list[int]:
    """The pids of every process whose session id is `session` (Linux ``/proc``)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # Fields after the command name: state, ppid, pgrp, session, ...
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def kill_session(session: int) -> None:
    """SIGKILL every process whose session id is `session`, twice over for late children."""
    for _ in range(2):
        for pid in session_processes(session):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def complete_checkpoints(experiment: Path, name: str) -> list[Path]:
    """The folders `name` (e.g. ``checkpoint_000001``) of the trials under `experiment` that are complete."""
    local = pyarrow.fs.LocalFileSystem()
    folders = sorted(experiment.glob(f"trial_*/{name}"))
    return [folder for folder in folders if checkpoint_epoch(local, str(folder)) is not None]
