"""The credit gym's test-sized sweep end to end on a real local Ray and a real MLflow sqlite store.

`tune_jobs/configs/gym-test.yaml`: 3 trials (2 at once) of 2 epochs over five sources, through the
`dense-reward sweep` command; every trial reports val_reward and the gym's gold reward per epoch.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.support.paths import GYM_TEST_CONFIG
from tests.support.ray_fixtures import ray_local  # noqa: F401
from tune_jobs import tracking
from tune_jobs.cli import main
from tune_jobs.config import load_sweep_config
from tune_jobs.results import load_results
from tune_jobs.rundir import read_manifest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def run_dir(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    config = load_sweep_config(GYM_TEST_CONFIG)
    assert (config.search.trials, config.ppo.epochs, config.evaluation.gold_scorer) == (3, 2, "credit-gym")
    assert config.shaping.sources == ["sparse", "attention", "redistribution", "shap", "lime"]
    folder = tmp_path_factory.mktemp("runs") / "gym-test"
    assert main(["sweep", str(GYM_TEST_CONFIG), "--run-dir", str(folder)]) == 0
    return folder


def test_every_trial_finishes_with_val_and_gold_rewards(run_dir: Path) -> None:
    manifest = read_manifest(run_dir)
    assert manifest is not None
    results = load_results(manifest)
    assert len(results.trials) == 3
    assert results.trials[0].weights["sparse"] == pytest.approx(1.0)
    assert results.trials[1].weights["attention"] == pytest.approx(0.8)
    for row in results.trials:
        assert row.status == "TERMINATED" and row.epoch == 2
        assert row.best_val_reward is not None and math.isfinite(row.best_val_reward)
    assert results.recommended is not None

    client = MlflowClient(tracking_uri=manifest.tracking_uri)
    children = tracking.child_runs(client, manifest.experiment_id, manifest.parent_run_id)
    assert len(children) == 3
    for child in children:
        assert child.info.status == "FINISHED"
        for key in ("val_reward", "gold_reward"):
            history = client.get_metric_history(child.info.run_id, key)
            assert sorted(m.step for m in history) == [1, 2] and all(math.isfinite(m.value) for m in history)
        # The gold is a sum of +-0.1 terms over 24 words: a mean over 8 responses stays well inside +-3.
        assert abs(child.data.metrics["gold_reward"]) < 3.0
        assert child.data.metrics["attribution_seconds"] > 0.0
