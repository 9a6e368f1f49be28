"""The search space: simplex weights, box knobs, and the maps to and from trial configs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dense_reward.config import ConfigError
from dense_reward.simplex import SOURCES, WeightsError
from tune_jobs.config import KnobSpec
from tune_jobs.config import SweepConfig as Config
from tune_jobs.search.space import WEIGHTS_KEY, SearchSpace

SOURCES4 = ("sparse", "attention", "redistribution", "shap")
KNOBS = {"shaping.tau": KnobSpec(low=0.1, high=10.0, log=True), "ppo.ent_coef": KnobSpec(low=0.0, high=0.1)}


@pytest.fixture()
def space() -> SearchSpace:
    return SearchSpace(SOURCES4, dict(KNOBS), {"shaping.tau": 1.0})


def test_shape_and_bounds(space: SearchSpace) -> None:
    assert (space.num_sources, space.num_knobs, space.dim, space.unit_dim) == (4, 2, 6, 5)
    low, high = space.bounds
    np.testing.assert_allclose(low, [0, 0, 0, 0, math.log(0.1), 0.0])
    np.testing.assert_allclose(high, [1, 1, 1, 1, math.log(10.0), 0.1])


def test_knob_defaults_come_from_config_or_box_centre(space: SearchSpace) -> None:
    assert space.knob_defaults["shaping.tau"] == 1.0
    assert space.knob_defaults["ppo.ent_coef"] == pytest.approx(0.05)
    outside = SearchSpace(
        SOURCES4, {"shaping.tau": KnobSpec(low=2.0, high=8.0, log=True)}, {"shaping.tau": 1.0}
    )
    assert outside.knob_defaults["shaping.tau"] == pytest.approx(4.0)  # geometric centre of a log box


def test_unit_cube_maps_onto_simplex_and_box(space: SearchSpace) -> None:
    rng = np.random.default_rng(0)
    corners = [np.zeros(space.unit_dim), np.ones(space.unit_dim)]
    for u in [*corners, *rng.random((500, space.unit_dim))]:
        config = space.from_unit(u)
        assert set(config) == {WEIGHTS_KEY, *KNOBS}
        weights = np.array(list(config[WEIGHTS_KEY].values()))
        assert np.all(weights >= 0) and abs(weights.sum() - 1.0) <= 1e-9
        assert space.contains(config)


def test_negligible_weights_become_zero_so_no_trial_pays_for_them(space: SearchSpace) -> None:
    # What an optimiser on the simplex returns on a face: the other weights are not 0 but ~1e-17.
    x = np.array([2.3e-17, 8.0e-17, 4.0e-4, 1.0 - 4.0e-4 - 1.03e-16, 0.0, 0.05])
    weights = space.from_vector(x)[WEIGHTS_KEY]
    assert weights == {"sparse": 0.0, "attention": 0.0, "redistribution": 0.0, "shap": 1.0}
    kept = space.from_vector(np.array([0.002, 0.3, 0.3, 0.398, 0.0, 0.05]))[WEIGHTS_KEY]
    assert kept["sparse"] == pytest.approx(0.002) and math.isclose(sum(kept.values()), 1.0)
    rng = np.random.default_rng(1)
    for u in rng.random((300, space.unit_dim)):
        values = np.array(list(space.from_unit(u, concentration=0.3)[WEIGHTS_KEY].values()))
        assert np.all((values == 0.0) | (values >= 1e-3)) and math.isclose(values.sum(), 1.0)


@pytest.mark.parametrize("concentration", [0.3, 2.0])
def test_a_concentration_gives_symmetric_dirichlet_weights(space: SearchSpace, concentration: float) -> None:
    rng = np.random.default_rng(2)
    units = rng.random((6000, space.unit_dim))
    weights = np.array([list(space.from_unit(u, concentration)[WEIGHTS_KEY].values()) for u in units])  # (N, 4)
    d, a = space.num_sources, concentration
    assert np.all(weights >= 0) and np.allclose(weights.sum(axis=1), 1.0)
    # Dirichlet(a,...,a): mean 1/d, second moment (a + 1) / (d (d a + 1)) for every weight.
    np.testing.assert_allclose(weights.mean(axis=0), 1 / d, atol=0.012)
    np.testing.assert_allclose((weights**2).mean(axis=0), (a + 1) / (d * (d * a + 1)), rtol=0.05)
    with pytest.raises(ValueError, match="concentration"):
        space.from_unit(units[0], 0.0)


def test_uniform_unit_cube_gives_dirichlet_one_weights(space: SearchSpace) -> None:
    rng = np.random.default_rng(1)
    weights = np.array([list(space.sample_uniform(rng)[WEIGHTS_KEY].values()) for _ in range(6000)])  # (N, 4)
    d = space.num_sources
    # Dirichlet(1,...,1): every weight has mean 1/d and second moment 2 / (d (d + 1)).
    np.testing.assert_allclose(weights.mean(axis=0), 1 / d, atol=0.01)
    np.testing.assert_allclose((weights**2).mean(axis=0), 2 / (d * (d + 1)), atol=0.006)
    taus = np.array([space.sample_uniform(rng)["shaping.tau"] for _ in range(4000)])
    # Log-uniform on [0.1, 10]: half the mass below 1.
    assert abs((taus < 1.0).mean() - 0.5) < 0.03


def test_ratio_cube_maps_onto_simplex_and_round_trips(space: SearchSpace) -> None:
    rng = np.random.default_rng(2)
    for r in [np.zeros(6), np.ones(6), *rng.random((300, 6))]:
        config = space.from_ratios(r)
        assert space.contains(config)
        again = space.from_ratios(space.to_ratios(config))
        assert again[WEIGHTS_KEY] == pytest.approx(config[WEIGHTS_KEY], abs=1e-12)
        assert again["shaping.tau"] == pytest.approx(config["shaping.tau"])
    assert space.from_ratios(np.zeros(6))[WEIGHTS_KEY] == {s: 0.25 for s in SOURCES4}
    assert space.from_ratios(np.array([0, 0.3, 0, 0, 0.5, 0.5]))[WEIGHTS_KEY]["attention"] == 1.0


def test_no_face_of_the_ratio_cube_collapses_to_a_corner(space: SearchSpace) -> None:
    rng = np.random.default_rng(3)
    d = space.num_sources
    for i in range(d):
        for side in (0.0, 1.0):
            ratios = rng.random((200, 6))
            ratios[:, i] = side
            weights = np.array([list(space.from_ratios(r)[WEIGHTS_KEY].values()) for r in ratios])  # (200, d)
            corners = np.isclose(weights.max(axis=1), 1.0, atol=1e-3)
            assert corners.mean() < 0.05, (i, side)
            assert np.ptp(weights, axis=0).max() > 0.3, (i, side)
    # The stick-breaking cube, by contrast, sends its whole face u_0 = 1 to the corner w_0 = 1.
    units = rng.random((50, space.unit_dim))
    units[:, 0] = 1.0
    assert all(space.from_unit(u)[WEIGHTS_KEY]["sparse"] == 1.0 for u in units)


def test_vector_round_trip_and_projection(space: SearchSpace) -> None:
    config = space.point({"sparse": 0.25, "attention": 0.75}, {"shaping.tau": 2.0, "ppo.ent_coef": 0.01})
    x = space.to_vector(config)
    np.testing.assert_allclose(x, [0.25, 0.75, 0, 0, math.log(2.0), 0.01])
    assert space.from_vector(x)["shaping.tau"] == pytest.approx(2.0)
    # An optimiser's output: slightly off the simplex, a tiny negative weight, a knob past its bound.
    off = np.array([0.3000004, 0.5, 0.2000003, -1e-7, math.log(20.0), 0.05])
    projected = space.from_vector(off)
    assert space.contains(projected)
    assert abs(sum(projected[WEIGHTS_KEY].values()) - 1.0) <= 1e-12
    assert projected[WEIGHTS_KEY]["shap"] == 0.0
    assert projected["shaping.tau"] == 10.0


def test_point_fills_missing_sources_and_defaults(space: SearchSpace) -> None:
    config = space.point({"sparse": 1.0})
    assert config[WEIGHTS_KEY] == {"sparse": 1.0, "attention": 0.0, "redistribution": 0.0, "shap": 0.0}
    assert config["shaping.tau"] == 1.0
    with pytest.raises(ValueError, match="sum to 1"):
        space.point({"sparse": 0.5})
    with pytest.raises(ValueError, match="lime"):
        space.point({"lime": 1.0})
    with pytest.raises(ValueError, match="outside"):
        space.point({"sparse": 1.0}, {"shaping.tau": 50.0})


def test_contains_rejects_off_simplex_and_out_of_box(space: SearchSpace) -> None:
    good = space.point({"sparse": 0.5, "shap": 0.5})
    assert space.contains(good)
    assert not space.contains({**good, WEIGHTS_KEY: {**good[WEIGHTS_KEY], "sparse": 0.5 + 1e-5}})
    assert not space.contains({**good, "ppo.ent_coef": 0.2})
    assert not space.contains({WEIGHTS_KEY: {"sparse": 1.0}, **{k: good[k] for k in KNOBS}})


def test_source_count_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"at least 2 sources, got 1"):
        SearchSpace(("sparse",))
    with pytest.raises(WeightsError, match="unknown source"):
        SearchSpace(("sparse", "telepathy"))


def test_a_search_can_mix_every_known_source() -> None:
    from tune_jobs.search import BoTorchSearcher

    searcher = BoTorchSearcher(SearchSpace(SOURCES), n_init=3, raw_samples=32, num_restarts=2, maxiter=10)
    for i in range(5):  # 3 initial points, then 2 GP suggestions over all sources
        config = searcher.suggest(f"t{i}")
        weights = config[WEIGHTS_KEY]
        assert list(weights) == list(SOURCES)
        assert math.isclose(sum(weights.values()), 1.0, abs_tol=1e-6) and min(weights.values()) >= 0.0
        searcher.on_trial_complete(f"t{i}", {"val_reward": weights["sparse"] - weights["lime"], "val_reward_sem": 0.01})


def test_from_config(tiny_config: Config) -> None:
    config = tiny_config.model_copy(deep=True)
    config.search.knobs = {"ppo.kl_coef": KnobSpec(low=0.01, high=0.5, log=True)}
    space = SearchSpace.from_config(config)
    assert space.sources == tuple(tiny_config.shaping.sources)
    assert space.knob_names == ("ppo.kl_coef",)
    assert space.knob_defaults["ppo.kl_coef"] == config.ppo.kl_coef
    assert space.signature()["knobs"]["ppo.kl_coef"] == {"low": 0.01, "high": 0.5, "log": True}
