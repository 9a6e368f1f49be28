"""The BoTorch math of the search as pure functions, and the trial history, without Ray."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tune_jobs.search import gp
from tune_jobs.search.history import TrialHistory
from tune_jobs.search.recommendation import recommend
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


def test_bounded_torch_restores_threads_rng_and_gp_argument_checks() -> None:
    import gpytorch
    import linear_operator

    threads = torch.get_num_threads()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with gp.bounded_torch(1, seed=0):
        assert torch.get_num_threads() == 1
        assert not gpytorch.settings.debug.on() and not linear_operator.settings.debug.on()
        torch.rand(10)  # draws from the private RNG only
    assert gpytorch.settings.debug.on() and linear_operator.settings.debug.on()
    assert torch.get_num_threads() == threads
    torch.testing.assert_close(torch.rand(3), expected)


def test_fit_gp_learns_the_bump_and_reports_its_hyperparameters(space: SearchSpace) -> None:
    x, y = observed(space, 16)
    with gp.bounded_torch(1, 0):
        model = gp.fit_gp(x, y, space.bounds)
        mean = model.posterior(torch.as_tensor(np.stack([TARGET, [1.0, 0.0, 0.0]]))).mean.squeeze(-1)
        hyper = gp.hyperparameters_of(model)
    assert mean[0] > mean[1] + 0.3  # the bump beats the far corner
    assert json.loads(json.dumps(hyper)) == hyper
    lengthscale = np.asarray(hyper["covar_module.raw_lengthscale"])
    assert lengthscale.shape == (1, space.bounds.shape[1])
    np.testing.assert_allclose(
        model.covar_module.raw_lengthscale.detach().numpy(), lengthscale, rtol=0, atol=0
    )


def test_raw_candidates_lie_on_the_space_and_near_the_best(space: SearchSpace) -> None:
    x, y = observed(space, 8)
    candidates = gp.raw_candidates(space, x, y, count=32, seed=0)
    faces = 32 // gp.FACE_FRACTION
    assert candidates.shape == (32 + 6 + faces + gp.LOCAL_CENTRES * gp.LOCAL_SAMPLES, 3)
    np.testing.assert_allclose(candidates.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(candidates >= 0)
    np.testing.assert_array_equal(candidates[32:35], np.eye(3))  # the vertices, then the edge midpoints
    np.testing.assert_array_equal(candidates[35], [0.5, 0.5, 0.0])
    assert np.any((candidates[38 : 38 + faces] > 0).sum(axis=1) == 2)
    six = SearchSpace(("sparse", "attention", "redistribution", "shap", "lime", "integrated_gradients"))
    wide = gp.raw_candidates(six, np.zeros((0, 6)), np.zeros(0), count=64, seed=0)
    sizes = (wide[64 + 21 : 64 + 21 + 64 // gp.FACE_FRACTION] > 0).sum(
        axis=1
    )  # after 6 vertices, 15 midpoints
    assert set(sizes.tolist()) == {2, 3}
    local = candidates[38 + faces : 38 + faces + gp.LOCAL_SAMPLES]
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
    x, y, yvar = history.observations(sign=-1.0)
    assert yvar is None  # t0 reported no sem
    np.testing.assert_array_equal(x, [[1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(y, [-0.25])
    np.testing.assert_array_equal(history.vectors("pending", "failed"), [[0, 1, 0], [0, 0, 1], [0.5, 0.5, 0]])
    restored = TrialHistory(space, "val_reward")
    restored.load_state(history.to_state())
    assert restored.records() == history.records()


def test_observed_variances_enter_the_gp_in_its_standardised_scale(space: SearchSpace) -> None:
    x, y = observed(space, 8)
    y = 10.0 * y  # a scale far from 1, so a missed rescaling shows
    yvar = np.linspace(1e-3, 8e-3, 8)
    with gp.bounded_torch(1, 0):
        model = gp.fit_gp(x, y, space.bounds, yvar=yvar)
    noise = model.likelihood.noise.detach().numpy().reshape(-1)
    np.testing.assert_allclose(noise, yvar / np.var(y, ddof=1), rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# recommendation
# --------------------------------------------------------------------------------------------------


def noisy_case(space: SearchSpace) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """Twelve consistent trials around a bump (sem 0.01) and one lucky outlier among them (sem 0.2)."""
    rng = np.random.default_rng(0)
    weights = rng.dirichlet(60.0 * TARGET + 1.0, size=13)  # (13, 3) near TARGET
    truth = 0.5 - np.sum((weights - TARGET) ** 2, axis=1)  # (13,)
    values = truth + 0.01 * rng.standard_normal(13)
    sems = np.full(13, 0.01)
    values[12], sems[12] = truth[12] + 0.3, 0.2  # the lucky one
    configs = [space.point(dict(zip(SOURCES, w.tolist(), strict=True))) for w in weights]
    return configs, values, sems


def test_recommendation_is_not_the_lucky_outlier(space: SearchSpace) -> None:
    configs, values, sems = noisy_case(space)
    result = recommend(space, configs, values.tolist(), sems.tolist())
    assert result.method == "gp" and result.note is None
    assert result.best_observed_index == 12
    assert result.index != 12
    assert result.config == configs[result.index]
    assert result.lower < result.mean < result.upper
    assert result.mean < values[12] - 0.2  # the GP does not believe the lucky value
    assert abs(result.mean - values[result.index]) < 0.05


def test_recommendation_without_sems_learns_the_noise(space: SearchSpace) -> None:
    configs, values, _ = noisy_case(space)
    result = recommend(space, configs[:12], values[:12].tolist(), [0.01] * 11 + [None])
    assert result.method == "gp" and result.lower is not None and result.upper is not None


def test_recommendation_falls_back_to_best_observed_with_few_trials(space: SearchSpace) -> None:
    configs, values, sems = noisy_case(space)
    result = recommend(space, configs[11:], values[11:].tolist(), sems[11:].tolist())
    assert (result.method, result.index, result.best_observed_index) == ("best-observed", 1, 1)
    assert "fewer than the 3" in result.note
    assert result.mean == values[12]
    assert result.upper - result.mean == pytest.approx(1.959963984540054 * 0.2)
    assert recommend(space, configs[:1], [0.5]).lower is None
    with pytest.raises(ValueError, match="non-finite"):
        recommend(space, configs[:3], [0.1, float("nan"), 0.2])
    with pytest.raises(ValueError, match="3 configs but 2 values"):
        recommend(space, configs[:3], [0.1, 0.2])
