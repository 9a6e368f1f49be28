"""Paths every test folder uses."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root."""
CONFIGS = ROOT / "tune_jobs" / "configs"
TINY_CONFIG = CONFIGS / "tiny.yaml"
"""The sweep on tiny built-in models used across the tests."""
BENCHMARKS = ROOT / "tests" / "benchmarks"
GYM_CONFIG = CONFIGS / "gym.yaml"
"""The credit gym's full sweep (25 trials)."""
GYM_TEST_CONFIG = CONFIGS / "gym-test.yaml"
"""The credit gym's sweep at test size (3 trials)."""
