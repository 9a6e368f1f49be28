"""`tune_jobs.reaper`: what a killed driver leaves behind is ended, and nothing else is touched."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

from tune_jobs.reaper import descendants, kill_survivors, watch

# A "driver" that starts a grandchild in a session of its own (like Ray's agents), prints its pid, then waits.
DRIVER = textwrap.dedent(
    """
    import subprocess, sys, time
    agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    print(agent.pid, flush=True)
    time.sleep(600)
    """
)


def test_the_survivors_of_a_killed_driver_are_killed() -> None:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True)
    agent_pid = int(driver.stdout.readline())
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        assert agent_pid in descendants(driver.pid)
        watcher = subprocess.Popen([sys.executable, "-m", "tune_jobs.reaper", str(driver.pid)])
        time.sleep(2.0)  # the watcher has listed the driver's descendants
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        assert psutil.Process(agent_pid).is_running()  # the kill alone leaves the agent behind
        watcher.wait(timeout=30)
        assert not psutil.pid_exists(agent_pid) or psutil.Process(agent_pid).status() == psutil.STATUS_ZOMBIE
        assert bystander.poll() is None  # not a descendant: untouched
    finally:
        for pid in (agent_pid, bystander.pid, driver.pid):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


def test_a_reused_pid_is_not_killed() -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        created = psutil.Process(other.pid).create_time()
        assert kill_survivors({other.pid: created - 100.0}) == []  # same pid, another process
        assert other.poll() is None
        assert kill_survivors({other.pid: created}) == [other.pid]
        other.wait(timeout=10)
    finally:
        other.kill()


def test_watching_a_process_that_is_gone_returns_at_once() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert watch(gone.pid, poll_seconds=0.01) == []
