"""Ends the processes of a private local Ray when the driver that started it dies, SIGKILL included.

`ray.init()` without an address starts a head (GCS, raylet) that dies with the driver, but the raylet's
agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) outlive it: after a ``kill -9`` of a sweep
they stay forever. `start_reaper` starts a small watcher in a session of its own (so a Ctrl-C or a
kill of the driver's process group does not reach it) that keeps a list of the driver's descendants
while the driver lives, and kills whichever of them are still alive once it is gone. A process is
matched by pid *and* creation time, so a pid reused by an unrelated process is never touched.

Run as ``python -m tune_jobs.reaper DRIVER_PID``; `start_reaper` does that.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

POLL_SECONDS = 1.0
"""How often the watcher refreshes its list of descendants and checks that the driver lives."""


def descendants(pid: int) -> dict[int, float]:
    """``{pid: creation time}`` of every living descendant of `pid` (empty when `pid` is gone)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return {}
    found = {}
    for child in children:
        try:
            found[child.pid] = child.create_time()
        except psutil.Error:
            continue
    return found


def kill_survivors(known: dict[int, float]) -> list[int]:
    """SIGKILL each process of `known` that is still the same process (same pid and creation time)."""
    killed = []
    for pid, created in known.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == created:
                process.kill()
                killed.append(pid)
        except psutil.Error:
            continue
    return killed


def watch(driver_pid: int, poll_seconds: float = POLL_SECONDS) -> list[int]:
    """Follow `driver_pid`'s descendants until it exits, then kill the ones left; returns their pids."""
    known: dict[int, float] = {}
    try:
        driver = psutil.Process(driver_pid)
    except psutil.Error:
        return []
    while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
        known.update(descendants(driver_pid))
        known.pop(os.getpid(), None)  # the watcher is a child of the driver too
        time.sleep(poll_seconds)
    return kill_survivors(known)


def start_reaper() -> subprocess.Popen:
    """Start the watcher of this process (see the module docstring); it exits when this process is gone."""
    return subprocess.Popen(
        [sys.executable, "-m", "tune_jobs.reaper", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]))
