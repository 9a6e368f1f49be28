"""The BoTorch math of the search as pure functions, and the trial history, without Ray."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from tune_jobs.search import gp
from tune_jobs.search.history import TrialHistory
from tune_jobs.search.space import SearchSpace

SOURCES = ("sparse", "attention", "redistribution")
TARGET = np.array([0.2, 0.7, 0.1])


@pytest.fixture()
def space() -> SearchSpace:
    return SearchSpace(SOURCES)


def observed(space: SearchSpace, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` Sobol points ``(count, 3)`` and a smooth bump at TARGET ``(count,)``."""
    x = np.stack([space.to_vector(space.from_unit(u)) for u in gp.sobol_unit(space.unit_dim, count, seed)])
    return x, -np.sum((x - TARGET) ** 2, axis=1)


def test_search_math_imports_no_ray() -> None:
    code = (
        "import sys, tune_jobs.search.gp, tune_jobs.search.history, tune_jobs.search.space;"
        "from tune_jobs.search import SearchSpace;"
        "print(sorted(m for m in ('ray', 'optuna', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sobol_skip_continues_the_sequence() -> None:
    whole = gp.sobol_unit(4, 5, seed=3)
    assert whole.shape == (5, 4) and np.all((whole >= 0) & (whole <= 1))
    np.testing.assert_array_equal(gp.sobol_unit(4, 2, seed=3, skip=3), whole[3:])
    assert not np.allclose(gp.sobol_unit(4, 5, seed=4), whole)


def test_fit_gp_learns_the_bump_and_restarts_from_hyperparameters(space: SearchSpace) -> None:
    x, y = observed(space, 16)
    with gp.bounded_torch(1, 0):
        model = gp.fit_gp(x, y, space.bounds)
        mean = model.posterior(torch.as_tensor(np.stack([TARGET, [1.0, 0.0, 0.0]]))).mean.squeeze(-1)
        hyper = gp.hyperparameters_of(model)
        again = gp.hyperparameters_of(gp.fit_gp(x, y, space.bounds, hyper))
    assert mean[0] > mean[1] + 0.3  # the bump beats the far corner
    assert set(hyper) == set(again)
    for name, value in hyper.items():
        np.testing.assert_allclose(again[name], value, rtol=0.05, atol=1e-3)


def test_raw_candidates_lie_on_the_space_and_near_the_best(space: SearchSpace) -> None:
    x, y = observed(space, 8)
    candidates = gp.raw_candidates(space, x, y, count=32, seed=0)
    assert candidates.shape == (32 + gp.LOCAL_CENTRES * gp.LOCAL_SAMPLES, 3)
    np.testing.assert_allclose(candidates.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(candidates >= 0)
    local = candidates[32 : 32 + gp.LOCAL_SAMPLES]
    assert np.median(np.abs(local - x[np.argmax(y)]).max(axis=1)) < 0.1


def test_qlognei_candidate_on_simplex_and_away_from_pending(space: SearchSpace) -> None:
    x, y = observed(space, 10)
    options = {"num_sources": 3, "num_restarts": 2, "mc_samples": 32, "maxiter": 40, "seed": 0}
    with gp.bounded_torch(1, 0):
        model = gp.fit_gp(x, y, space.bounds)
        raw = gp.raw_candidates(space, x, y, 64, 0)
        free = gp.maximise_qlognei(model, x, np.zeros((0, 3)), raw, space.bounds, **options)
        busy = gp.maximise_qlognei(model, x, free[None], raw, space.bounds, **options)
    for candidate in (free, busy):
        assert abs(candidate.sum() - 1.0) < 1e-5 and np.all(candidate >= -1e-6)
    assert np.sum((free - TARGET) ** 2) < 0.05  # it goes for the bump
    assert np.max(np.abs(busy - free)) > 1e-3  # and elsewhere once the bump is pending


def test_too_close_is_max_norm_in_unit_cube_units() -> None:
    bounds = np.array([[0.0, -10.0], [1.0, 10.0]])
    others = np.array([[0.5, 0.0]])
    assert gp.too_close(np.array([0.5, 0.0019]), others, bounds, 1e-4)
    assert not gp.too_close(np.array([0.5, 0.01]), others, bounds, 1e-4)
    assert not gp.too_close(np.array([0.5, 0.0]), np.zeros((0, 2)), bounds, 1e-4)


def test_history_observations_keep_failures_out(space: SearchSpace) -> None:
    history = TrialHistory(space, "val_reward")
    for i, weights in enumerate(
        ({"sparse": 1.0}, {"attention": 1.0}, {"redistribution": 1.0}, {"sparse": 0.5, "attention": 0.5})
    ):
        history.add(f"t{i}", space.point(weights))
    history.complete("t0", {"val_reward": 0.25}, error=False)
    history.complete("t1", {"val_reward": float("nan")}, error=False)
    history.complete("t2", {"val_reward": 0.5}, error=True)
    x, y = history.observations(sign=-1.0)
    np.testing.assert_array_equal(x, [[1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(y, [-0.25])
    np.testing.assert_array_equal(history.unfinished(), [[0, 1, 0], [0, 0, 1], [0.5, 0.5, 0]])
    restored = TrialHistory(space, "val_reward")
    restored.load_state(history.to_state())
    assert restored.records() == history.records()
