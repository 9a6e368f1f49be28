"""Shared fixtures: an isolated model cache, the built-in tiny models and the tiny config."""

from __future__ import annotations

from pathlib import Path

import pytest

from dense_reward.config import ModelSpec, RewardModelSpec
from tests.support.paths import TINY_CONFIG
from tune_jobs.config import SweepConfig, load_sweep_config


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build built-in models into a per-session folder, never into the user's cache."""
    path = tmp_path_factory.mktemp("dense-reward-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("DENSE_REWARD_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture()
def one_torch_thread():
    """Tiny models run fastest on one thread, and the machine's cores are shared with other tests."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_policy_spec() -> ModelSpec:
    return ModelSpec(path="builtin:tiny-gpt2")


@pytest.fixture(scope="session")
def tiny_rm_spec() -> RewardModelSpec:
    return RewardModelSpec(path="builtin:tiny-rm")


@pytest.fixture()
def tiny_config() -> SweepConfig:
    """tune_jobs/configs/tiny.yaml: the library's sections and the sweep's (a `Config` where one is asked)."""
    return load_sweep_config(TINY_CONFIG)
