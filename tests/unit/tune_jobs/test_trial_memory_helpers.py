"""A trial's peak resident memory is its own: the peak can be reset, and freed memory goes back to the system."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

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
