"""The MLflow UI on a sweep's tracking store, bound to 127.0.0.1.

A sweep with the embedded store keeps `mlflow.db` and `mlartifacts/` in its run dir; this starts
`mlflow server` on them (one worker, no job-execution workers: ready in seconds, a handful of
processes) and gives the URL of the sweep's run list. A sweep that logs to an MLflow server already
has a UI: there is nothing to start, only the URL to give.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from dense_reward.errors import UserError
from tune_jobs.tracking import RUNS_VIEW_KEY

HOST = "127.0.0.1"
"""The UI is never bound wider: anyone who reaches it can read and delete runs."""


def runs_url(base_url: str, experiment_id: str) -> str:
    """The page listing an experiment's runs (`/#/experiments/<id>` alone opens an overview without runs),
    in the view a sweep stores (`tracking.share_runs_view`): trials by val_reward, with their weights."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={RUNS_VIEW_KEY}"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, None for any other store."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///"))


def is_server(tracking_uri: str) -> bool:
    """True for an MLflow server (which serves its own UI)."""
    return urlparse(tracking_uri).scheme in ("http", "https")


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def server_command(database: Path, artifacts: Path, port: int) -> list[str]:
    """`mlflow server` on a sqlite store with its artifacts beside it, on 127.0.0.1:`port`."""
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{database}",
        "--artifacts-destination", str(artifacts),
        "--host", HOST,
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip


def start_server(database: Path, artifacts: Path, port: int) -> subprocess.Popen:
    """Start the server (not yet ready: see `wait_ready`). Refuses a port already in use."""
    if not database.is_file():
        raise UserError(
            f"no MLflow store at {database}: has the sweep started? (`dense-reward sweep CONFIG`)"
        )
    if not port_is_free(port):
        raise UserError(f"--port {port}: {HOST}:{port} is in use; pass another --port")
    env = dict(os.environ)
    # The job-execution workers serve nothing here and triple the server's start-up time.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    # The server's request log goes to stderr: stdout carries only the URL, for scripts.
    return subprocess.Popen(server_command(database, artifacts, port), env=env, stdout=sys.stderr)


def wait_ready(proc: subprocess.Popen, base_url: str, timeout: float = 120.0) -> None:
    """Block until the server answers `/health`; `UserError` when it exits or stays silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(
                f"mlflow server exited with status {proc.returncode} before it was ready (see above)"
            )
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise UserError(f"mlflow server at {base_url} did not answer within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
