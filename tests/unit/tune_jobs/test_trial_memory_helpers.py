"""A trial's peak resident memory is its own: the peak can be reset, and freed memory goes back to the system."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tune_jobs.local_ray import JEMALLOC_CONF, private_worker_env
from tune_jobs.trainable import peak_rss_mb, release_memory, reset_peak_rss


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_peak_rss_follows_a_large_allocation_and_resets_after_it() -> None:
    assert reset_peak_rss()
    before = peak_rss_mb()
    block = np.ones(300 * 2**20 // 8)  # 300 MiB, every page touched
    assert peak_rss_mb() >= before + 250
    del block
    release_memory()
    assert reset_peak_rss()
    # The peak starts again from what is resident now, not from the freed block.
    assert peak_rss_mb() < before + 150


def test_release_memory_hands_back_freed_heap_blocks() -> None:
    # Blocks under glibc's mmap threshold live on the heap; with a live block above them, `free` keeps
    # them resident (measured: 500 MiB stay resident without the trim).
    blocks = [np.ones(8 * 1024) for _ in range(8000)]  # 500 MiB in 64 KiB blocks
    above = np.ones(8 * 1024)
    grown = rss_mb()
    del blocks
    release_memory()
    assert rss_mb() < grown - 400
    assert above.sum() == 8 * 1024


def test_private_worker_env_preloads_rays_jemalloc_and_keeps_what_the_user_set() -> None:
    env = private_worker_env({})
    assert Path(env["LD_PRELOAD"]).is_file() and Path(env["LD_PRELOAD"]).name == "libjemalloc.so"
    assert env["MALLOC_CONF"] == JEMALLOC_CONF and env["MALLOC_ARENA_MAX"] == "2"
    # A preload of the user's own replaces ours (two allocators cannot both serve malloc); their settings stay.
    assert private_worker_env({"LD_PRELOAD": "/opt/libtcmalloc.so"}) == {"MALLOC_ARENA_MAX": "2"}
    assert "MALLOC_CONF" not in private_worker_env({"MALLOC_CONF": "narenas:1"})


JEMALLOC_PURGE_CHECK = """
import ctypes, os
from pathlib import Path
import numpy as np
from tune_jobs.trainable import release_memory

def rss_mb():
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

assert hasattr(ctypes.CDLL(None), "mallctl"), "jemalloc is not loaded"
blocks = [np.ones(8 * 1024) for _ in range(8000)]  # 500 MiB in 64 KiB blocks
grown = rss_mb()
del blocks
kept = rss_mb()
release_memory()
print(grown, kept, rss_mb())
"""


def test_release_memory_purges_jemalloc_arenas(tmp_path: Path) -> None:
    env = private_worker_env({})
    # Freed pages never decay back to the system by themselves here: only the purge can return them.
    env["MALLOC_CONF"] = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
    done = subprocess.run(
        [sys.executable, "-c", JEMALLOC_PURGE_CHECK],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    grown, kept, released = map(float, done.stdout.split())
    assert kept > grown - 100  # jemalloc kept the freed blocks resident
    assert released < grown - 400
