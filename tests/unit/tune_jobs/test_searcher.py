"""Searchers on the weight simplex: validity, pending trials, failures, save/restore, the factory."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray.tune.search import ConcurrencyLimiter

from dense_reward.config import ConfigError
from tune_jobs.config import KnobSpec
from tune_jobs.config import SweepConfig as Config
from tune_jobs.search import (
    BoTorchSearcher,
    RandomSimplexSearcher,
    SimplexOptunaSearch,
    make_searcher,
)
from tune_jobs.search.space import WEIGHTS_KEY, SearchSpace

SOURCES = ("sparse", "attention", "redistribution", "shap")
KNOBS = {"ppo.kl_coef": KnobSpec(low=1e-3, high=0.5, log=True), "ppo.ent_coef": KnobSpec(low=0.0, high=0.1)}
TARGET = np.array([0.1, 0.5, 0.3, 0.1])


@pytest.fixture()
def space() -> SearchSpace:
    return SearchSpace(SOURCES, dict(KNOBS), {"ppo.kl_coef": 0.05})


def objective(config: dict[str, Any]) -> float:
    """A smooth bump at TARGET (weights) and kl_coef = 0.05."""
    w = np.array([config[WEIGHTS_KEY][s] for s in SOURCES])
    return float(-np.sum((w - TARGET) ** 2) - 0.01 * (math.log(config["ppo.kl_coef"] / 0.05)) ** 2)


def botorch(space: SearchSpace, **kwargs: Any) -> BoTorchSearcher:
    """A BoTorch searcher with a small acquisition budget, enough for behaviour tests."""
    options = {"seed": 0, "n_init": 4, "num_restarts": 2, "raw_samples": 64, "mc_samples": 32, "maxiter": 30}
    return BoTorchSearcher(space, **{**options, **kwargs})


def run(searcher: Any, trials: int, concurrency: int = 1, start: int = 0) -> list[dict[str, Any]]:
    """Ask ``concurrency`` suggestions, report them all, repeat; return every config in order."""
    configs = []
    for first in range(start, start + trials, concurrency):
        batch = [
            (f"t{i}", searcher.suggest(f"t{i}"))
            for i in range(first, min(first + concurrency, start + trials))
        ]
        for trial_id, config in batch:
            searcher.on_trial_result(trial_id, {"val_reward": objective(config), "training_iteration": 1})
            searcher.on_trial_complete(trial_id, {"val_reward": objective(config)})
            configs.append(config)
    return configs


def assert_valid(space: SearchSpace, config: dict[str, Any]) -> None:
    assert set(config) == {WEIGHTS_KEY, *space.knob_names}
    weights = np.array([config[WEIGHTS_KEY][s] for s in space.sources])
    assert np.all(weights >= 0.0), config
    assert abs(weights.sum() - 1.0) <= 1e-9, config
    for name, spec in space.knobs.items():
        assert spec.low <= config[name] <= spec.high, config


# --------------------------------------------------------------------------------------------------
# BoTorch
# --------------------------------------------------------------------------------------------------


def test_botorch_suggestions_on_simplex_and_in_box(space: SearchSpace) -> None:
    searcher = botorch(space)
    configs = run(searcher, trials=10, concurrency=2)
    for config in configs:
        assert_valid(space, config)
    assert searcher.hyperparameters is not None, "the GP never ran"
    # The GP phase should beat the quasi-random design on this smooth objective.
    values = [objective(c) for c in configs]
    assert max(values[4:]) > max(values[:4])


def test_points_to_evaluate_come_first_and_count_toward_n_init(space: SearchSpace) -> None:
    points = [space.point({"sparse": 1.0}), space.point({s: 0.25 for s in SOURCES})]
    searcher = botorch(space, n_init=3, points_to_evaluate=points)
    first = run(searcher, trials=3)
    assert first[:2] == points
    assert searcher.hyperparameters is None  # the third was quasi-random
    run(searcher, trials=1, start=3)
    assert searcher.hyperparameters is not None  # the fourth came from the GP


def test_concurrent_suggestions_differ(space: SearchSpace) -> None:
    searcher = botorch(space)
    run(searcher, trials=6)
    pending = [searcher.suggest(f"p{i}") for i in range(3)]
    vectors = np.stack([space.to_vector(c) for c in pending])
    scale = space.bounds[1] - space.bounds[0]
    for i in range(3):
        for j in range(i):
            assert np.max(np.abs(vectors[i] - vectors[j]) / scale) > 1e-3, (pending[i], pending[j])
    assert [r.status for r in searcher.records()][-3:] == ["pending"] * 3


def test_failed_and_non_finite_trials_kept_out(space: SearchSpace) -> None:
    searcher = botorch(space)
    run(searcher, trials=5)
    outcomes = {
        "raised": ({"val_reward": 1.0}, True),
        "nan": ({"val_reward": float("nan")}, False),
        "inf": ({"val_reward": float("inf")}, False),
        "missing": ({"train_reward": 1.0}, False),
        "none": (None, False),
    }
    failed = {}
    for trial_id, (result, error) in outcomes.items():
        failed[trial_id] = searcher.suggest(trial_id)
        searcher.on_trial_complete(trial_id, result, error=error)
    records = {r.trial_id: r for r in searcher.records("failed")}
    assert set(records) == set(outcomes)
    assert records["raised"].reason == "error"
    assert "nan" in records["nan"].reason and "inf" in records["inf"].reason
    x, y, _ = searcher.observations()
    assert len(y) == 5 and np.all(np.isfinite(y))
    # Later suggestions stay away from every failed point.
    scale = space.bounds[1] - space.bounds[0]
    for config in run(searcher, trials=3, start=20):
        assert_valid(space, config)
        for bad in failed.values():
            assert np.max(np.abs(space.to_vector(config) - space.to_vector(bad)) / scale) > 1e-3


def test_resumed_failed_trial_that_completes_is_recorded(space: SearchSpace) -> None:
    searcher = RandomSimplexSearcher(space)
    searcher.suggest("a")
    searcher.on_trial_complete("a", None, error=True)
    assert searcher.records()[0].status == "failed"
    searcher.on_trial_complete("a", {"val_reward": 0.5})
    searcher.on_trial_complete("a", {"val_reward": 0.9})
    record = searcher.records()[0]
    assert (record.status, record.value, record.reason) == ("completed", 0.5, None)


def test_deterministic_under_seed(space: SearchSpace) -> None:
    first = run(botorch(space, seed=3), trials=6, concurrency=2)
    again = run(botorch(space, seed=3), trials=6, concurrency=2)
    other = run(botorch(space, seed=4), trials=2)
    assert first == again
    assert other[0] != first[0]


def test_save_restore_proposes_what_the_uninterrupted_searcher_would(
    space: SearchSpace, tmp_path: Path
) -> None:
    searcher = botorch(space, points_to_evaluate=[space.point({"sparse": 1.0})])
    run(searcher, trials=7)
    searcher.suggest("running")  # a trial still running when the sweep stops
    searcher.suggest("crashed")
    searcher.on_trial_complete("crashed", None, error=True)
    path = tmp_path / "searcher-state.json"
    searcher.save(str(path))
    state = json.loads(path.read_text())  # plain JSON, no pickle
    assert state["kind"] == "botorch" and len(state["trials"]) == 9

    restored = BoTorchSearcher(
        space, seed=123, n_init=1, num_restarts=2, raw_samples=64, mc_samples=32, maxiter=30
    )
    restored.restore(str(path))
    for name in ("next-1", "next-2"):
        expected, actual = searcher.suggest(name), restored.suggest(name)
        assert actual == expected
        for s in (searcher, restored):
            s.on_trial_complete(name, {"val_reward": objective(expected)})
    searcher.on_trial_complete("running", {"val_reward": 0.0})
    restored.on_trial_complete("running", {"val_reward": 0.0})
    assert restored.suggest("next-3") == searcher.suggest("next-3")


def test_each_gp_fit_starts_afresh_not_from_the_last_fit(space: SearchSpace) -> None:
    searcher = botorch(space)
    run(searcher, trials=6)
    state = searcher.get_state()
    fitted = state["hyperparameters"]
    assert fitted is not None
    # The same searcher, but its record of the last fit is something else: a warm-started fit would move.
    skewed = botorch(space)
    skewed.set_state({**state, "hyperparameters": {k: np.asarray(v) * 0 + 3.0 for k, v in fitted.items()}})
    assert skewed.suggest("next") == searcher.suggest("next")


def test_restore_refuses_another_space(space: SearchSpace, tmp_path: Path) -> None:
    searcher = botorch(space)
    run(searcher, trials=2)
    path = tmp_path / "state.json"
    searcher.save(str(path))
    other = botorch(SearchSpace(SOURCES))
    with pytest.raises(ValueError, match="saved for the space"):
        other.restore(str(path))
    path.write_text("not json")
    with pytest.raises(ValueError, match="cannot read searcher state"):
        searcher.restore(str(path))


def test_add_evaluated_point_feeds_the_model(space: SearchSpace) -> None:
    searcher = botorch(space, n_init=1)
    for weights in ({"sparse": 1.0}, {"attention": 1.0}):
        config = space.point(weights)
        searcher.add_evaluated_point(config, objective(config))
    _, y, yvar = searcher.observations()
    assert len(y) == 2 and yvar is None
    searcher.suggest("t0")
    assert searcher.hyperparameters is not None


def test_observed_sems_make_a_fixed_noise_gp_and_a_missing_one_a_learned_noise_gp(space: SearchSpace) -> None:
    searcher = botorch(space, n_init=4)
    for i in range(4):
        config = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(
            f"t{i}", {"val_reward": objective(config), "val_reward_sem": 0.01 * (i + 1)}
        )
    _, _, yvar = searcher.observations()
    np.testing.assert_allclose(yvar, [1e-4, 4e-4, 9e-4, 16e-4])
    searcher.on_trial_complete(
        "t4", {"val_reward": objective(searcher.suggest("t4")), "val_reward_sem": 0.02}
    )
    assert not any("noise" in name for name in searcher.hyperparameters), "the noise was learned"
    config = searcher.suggest("t5")
    searcher.on_trial_complete("t5", {"val_reward": objective(config)})  # no sem
    assert searcher.observations()[2] is None
    searcher.suggest("t6")
    assert any("noise" in name for name in searcher.hyperparameters), "no learned noise without sems"


def test_early_stopped_trials_stay_out_of_the_fit_and_are_not_pending(space: SearchSpace) -> None:
    # min_distance 2 exceeds every distance in the unit cube: any point to avoid forces a fallback.
    searcher = botorch(space, n_init=4, max_epochs=3, min_distance=2.0)
    for i in range(4):
        config = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"val_reward": objective(config), "epoch": 3})
    stopped = searcher.suggest("stopped")
    searcher.on_trial_complete("stopped", {"val_reward": 5.0, "epoch": 1})
    record = searcher.records()[-1]
    assert (record.status, record.value, record.epoch) == ("stopped", 5.0, 1)
    x, y, _ = searcher.observations()
    assert len(y) == 4 and 5.0 not in y
    assert len(searcher.history.vectors("pending", "failed")) == 0
    fallbacks = searcher.num_gp_fallbacks
    after = searcher.suggest("after")
    assert searcher.num_gp_fallbacks == fallbacks + 1, "the stopped point was not avoided"
    assert after != stopped
    # A later full-length report of a stopped trial does not turn it into an observation.
    searcher.on_trial_complete("stopped", {"val_reward": 5.0, "epoch": 3})
    assert searcher.records()[4].status == "stopped"


# --------------------------------------------------------------------------------------------------
# Optuna and random
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_optuna_produces_valid_configs(space: SearchSpace, sampler: str) -> None:
    start = space.point({"sparse": 0.5, "attention": 0.5})
    searcher = SimplexOptunaSearch(space, sampler=sampler, points_to_evaluate=[start], seed=0, n_init=3)
    configs = run(searcher, trials=7, concurrency=2)
    for config in configs:
        assert_valid(space, config)
    assert configs[0][WEIGHTS_KEY] == pytest.approx(start[WEIGHTS_KEY], abs=1e-9)
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == len(configs)
    # A NaN result does not crash the sampler and later suggestions stay valid.
    config = searcher.suggest("nan")
    searcher.on_trial_result("nan", {"val_reward": float("nan"), "training_iteration": 1})
    searcher.on_trial_complete("nan", {"val_reward": float("nan")})
    assert_valid(space, searcher.suggest("after-nan"))
    assert_valid(space, config)


def test_optuna_is_told_early_stopped_trials_were_pruned(space: SearchSpace) -> None:
    import optuna

    searcher = SimplexOptunaSearch(space, sampler="tpe", seed=0, n_init=2, max_epochs=4)
    for trial_id, epoch in (("full", 4), ("stopped", 2)):
        config = searcher.suggest(trial_id)
        searcher.on_trial_result(trial_id, {"val_reward": objective(config), "training_iteration": epoch})
        searcher.on_trial_complete(trial_id, {"val_reward": objective(config), "epoch": epoch})
    states = [t.state for t in searcher._ot_study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]


def test_random_is_dirichlet_and_deterministic(space: SearchSpace, tmp_path: Path) -> None:
    searcher = RandomSimplexSearcher(space, points_to_evaluate=[space.point({"shap": 1.0})], seed=7)
    configs = run(searcher, trials=400)
    assert configs[0][WEIGHTS_KEY]["shap"] == 1.0
    for config in configs:
        assert_valid(space, config)
    weights = np.array([[c[WEIGHTS_KEY][s] for s in SOURCES] for c in configs[1:]])
    np.testing.assert_allclose(weights.mean(axis=0), 0.25, atol=0.03)
    path = tmp_path / "random.json"
    searcher.save(str(path))
    restored = RandomSimplexSearcher(space, seed=0)
    restored.restore(str(path))
    assert restored.suggest("next") == searcher.suggest("next")


# --------------------------------------------------------------------------------------------------
# factory
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("botorch", BoTorchSearcher),
        ("optuna-tpe", SimplexOptunaSearch),
        ("optuna-gp", SimplexOptunaSearch),
        ("random", RandomSimplexSearcher),
    ],
)
def test_make_searcher(tiny_config: Config, name: str, kind: type) -> None:
    config = tiny_config.with_overrides({"search.searcher": name, "search.max_concurrent": 3})
    searcher = make_searcher(config)
    assert isinstance(searcher, ConcurrencyLimiter) and searcher.max_concurrent == 3
    assert isinstance(searcher.searcher, kind)
    assert (searcher.metric, searcher.mode) == ("val_reward", "max")
    space = SearchSpace.from_config(config)
    suggestions = [searcher.suggest(f"t{i}") for i in range(4)]
    assert suggestions[3] is None  # the fourth waits for a free slot
    assert suggestions[0][WEIGHTS_KEY] == pytest.approx(space.point({"sparse": 1.0})[WEIGHTS_KEY], abs=1e-9)
    for config_ in suggestions[:3]:
        assert_valid(space, config_)


def test_make_searcher_names_a_bad_start_point(tiny_config: Config) -> None:
    config = tiny_config.with_overrides({"search.points_to_evaluate": [{"sparse": 0.5, "shap": 0.2}]})
    with pytest.raises(ConfigError, match=r"search\.points_to_evaluate\[0\].*sum to 1"):
        make_searcher(config)


def test_botorch_searches_the_integrated_gradients_and_log_ratio_sources() -> None:
    sources = ("sparse", "integrated_gradients", "attention", "log_ratio")
    target = np.array([0.1, 0.6, 0.0, 0.3])
    searcher = botorch(SearchSpace(sources))
    best = -np.inf
    for i in range(7):
        config = searcher.suggest(f"t{i}")
        weights = config[WEIGHTS_KEY]
        assert list(weights) == list(sources)
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-6) and min(weights.values()) >= -1e-9
        value = -float(np.sum((np.array([weights[s] for s in sources]) - target) ** 2))
        searcher.on_trial_complete(f"t{i}", {"val_reward": value})
        best = max(best, value)
    assert best > -0.25  # the GP phase (after 4 quasi-random points) moves towards the target


@pytest.mark.parametrize("kind", ["botorch", "confirmation"])
def test_a_save_cut_short_leaves_the_last_state_whole(
    kind: str, space: SearchSpace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tune_jobs.confirm.phase import FixedListSearcher

    if kind == "botorch":
        searcher: Any = BoTorchSearcher(space, seed=0, n_init=2)
    else:
        searcher = FixedListSearcher([{WEIGHTS_KEY: {"sparse": 1.0}}, {WEIGHTS_KEY: {"attention": 1.0}}])
    searcher.suggest("t0")
    path = tmp_path / "searcher-state-1.json"
    searcher.save(str(path))
    saved = path.read_text()
    searcher.suggest("t1")

    def killed_mid_write(self: Path, text: str, *args: Any, **kwargs: Any) -> int:
        self.open("w").close()  # opened (truncated), then the process dies before writing
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        searcher.save(str(path))
    monkeypatch.undo()
    assert path.read_text() == saved
    searcher.restore(str(path))  # the last whole state, still readable
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("searcher-state")] == [path.name]
