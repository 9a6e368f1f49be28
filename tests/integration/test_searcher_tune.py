"""The BoTorch searcher inside a real Ray Tune sweep on a local Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray import tune

from tests.support.ray_fixtures import ray_local  # noqa: F401
from tune_jobs.config import SweepConfig as Config
from tune_jobs.search import BoTorchSearcher, make_searcher
from tune_jobs.search.space import WEIGHTS_KEY, SearchSpace

pytestmark = pytest.mark.integration

TARGET = {"sparse": 0.1, "attention": 0.5, "redistribution": 0.2, "shap": 0.1, "lime": 0.1}
EPOCHS = 2


def cheap_trainable(config: dict[str, Any]) -> None:
    """Two 'epochs' of a smooth objective of the weights; the sparse-only start point raises."""
    weights = config[WEIGHTS_KEY]
    if weights["sparse"] == 1.0:
        raise RuntimeError("this trial fails on purpose")
    distance = sum((weights[s] - t) ** 2 for s, t in TARGET.items())
    for epoch in range(EPOCHS):
        tune.report({"val_reward": -distance + 0.01 * epoch})


def cheap_botorch(config: Config) -> tuple[Any, BoTorchSearcher]:
    """The sweep's searcher (its concurrency limiter and the BoTorch searcher inside) on a small
    acquisition budget: these tests are about the Tune plumbing, not the optimiser's quality."""
    limiter = make_searcher(config)
    searcher = limiter.searcher
    assert isinstance(searcher, BoTorchSearcher)
    searcher.num_restarts, searcher.raw_samples, searcher.mc_samples, searcher.maxiter = 2, 64, 32, 30
    return limiter, searcher


@pytest.mark.timeout(600)
def test_sweep_of_12_trials_with_a_failure(ray_local: None, tiny_config: Config, tmp_path: Path) -> None:  # noqa: F811
    config = tiny_config.with_overrides(
        {"search.searcher": "botorch", "search.n_init": 4, "search.max_concurrent": 2, "search.trials": 12}
    )
    limiter, searcher = cheap_botorch(config)
    tuner = tune.Tuner(
        tune.with_resources(cheap_trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=limiter, num_samples=config.search.trials, reuse_actors=True),
        run_config=tune.RunConfig(name="sweep", storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()

    assert len(results) == 12
    assert len(results.errors) == 1
    space = SearchSpace.from_config(config)
    for result in results:
        assert space.contains(result.config)

    # The searcher in the driver saw every trial end and every intermediate result.
    records = searcher.records()
    assert len(records) == 12
    assert [r.status for r in records].count("failed") == 1
    assert [r.status for r in records].count("completed") == 11
    assert sum(r.results_seen for r in records) == 11 * EPOCHS
    assert records[0].config[WEIGHTS_KEY]["sparse"] == 1.0 and records[0].reason == "error"
    assert searcher.hyperparameters is not None

    # Tune saved the searcher's JSON state in the experiment folder; a new searcher restores it.
    restored = make_searcher(config).searcher
    restored.restore_from_dir(str(tmp_path / "sweep"))
    assert [r.status for r in restored.records()] == [r.status for r in records]
    values = [r.value for r in records if r.status == "completed"]
    assert np.allclose([r.value for r in restored.records("completed")], values)


def epochs_trainable(config: dict[str, Any]) -> None:
    """Four 'epochs' whose value rises with the epoch, reporting `epoch` as the real trainable does."""
    distance = sum((config[WEIGHTS_KEY][s] - t) ** 2 for s, t in TARGET.items())
    for epoch in range(1, 5):
        tune.report({"val_reward": -distance + 0.1 * epoch, "val_reward_sem": 0.01, "epoch": epoch})


@pytest.mark.timeout(600)
def test_asha_stopped_trials_stay_out_of_the_gp(ray_local: None, tiny_config: Config, tmp_path: Path) -> None:  # noqa: F811
    from ray.tune.schedulers import ASHAScheduler

    config = tiny_config.with_overrides(
        {"search.searcher": "botorch", "search.n_init": 4, "search.max_concurrent": 2, "ppo.epochs": 4}
    )
    limiter, searcher = cheap_botorch(config)
    tuner = tune.Tuner(
        tune.with_resources(epochs_trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(
            metric="val_reward",
            mode="max",
            search_alg=limiter,
            scheduler=ASHAScheduler(
                time_attr="training_iteration", max_t=4, grace_period=1, reduction_factor=2
            ),
            num_samples=10,
        ),
        run_config=tune.RunConfig(name="asha", storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()

    last_epochs = [r.metrics["epoch"] for r in results]
    records = searcher.records()
    assert len(records) == 10
    stopped = [r for r in records if r.status == "stopped"]
    assert stopped, "ASHA stopped no trial"
    assert all(r.epoch < 4 for r in stopped)
    assert sorted(r.epoch for r in records) == sorted(last_epochs)
    _, y, yvar = searcher.observations()
    assert len(y) == last_epochs.count(4)
    np.testing.assert_allclose(yvar, 1e-4)
