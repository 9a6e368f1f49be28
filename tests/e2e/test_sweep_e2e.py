"""End to end on a real local Ray and a real MLflow sqlite store: a 4-trial sweep (2 at once, 2 epochs),
its MLflow record (val_reward with its standard error per epoch), best observed and recommended trials,
its best checkpoint, `results`, and `final` registering a model version of the recommended trial."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import ViewType

from dense_reward.run import Run, read_run_state
from tests.support.paths import TINY_CONFIG
from tests.support.ray_fixtures import ray_local  # noqa: F401
from tune_jobs import tracking
from tune_jobs.cli import main
from tune_jobs.config import load_sweep_config
from tune_jobs.sweep import SweepOutcome, run_sweep
from tune_jobs.trainable import trial_arguments

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def sweep(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> SweepOutcome:  # noqa: F811
    config = load_sweep_config(TINY_CONFIG).with_overrides({"name": "e2e"})
    assert (config.search.trials, config.search.max_concurrent, config.ppo.epochs) == (4, 2, 2)
    return run_sweep(config, run_dir=tmp_path_factory.mktemp("runs") / "e2e")


@pytest.fixture(scope="module")
def client(sweep: SweepOutcome) -> MlflowClient:
    return MlflowClient(tracking_uri=sweep.manifest.tracking_uri)


def test_every_trial_finishes_both_epochs(sweep: SweepOutcome) -> None:
    rows = sweep.results.trials
    assert len(rows) == 4
    assert all(row.status == "TERMINATED" and row.epoch == 2 for row in rows)
    # The searcher's first point is the sparse baseline from the config.
    assert rows[0].weights["sparse"] == pytest.approx(1.0)
    for row in rows:
        assert sum(row.weights.values()) == pytest.approx(1.0)
        assert row.best_val_reward is not None and row.best_checkpoint is not None
        assert row.val_reward_sem is not None and row.val_reward_sem >= 0.0
        assert row.best_val_reward_sem is not None
    assert sweep.results.best.best_val_reward == max(row.best_val_reward for row in rows)


def test_the_sweep_recommends_an_evaluated_point_with_an_interval(sweep: SweepOutcome) -> None:
    recommended = sweep.results.recommended
    assert recommended is not None
    row = sweep.results.recommended_trial
    assert row is not None and row.best_checkpoint is not None
    assert recommended.weights == pytest.approx(row.weights)
    assert recommended.lower <= recommended.mean <= recommended.upper


def test_mlflow_holds_one_parent_and_a_child_per_trial(sweep: SweepOutcome, client: MlflowClient) -> None:
    manifest = sweep.manifest
    runs = client.search_runs([manifest.experiment_id])
    parents = [r for r in runs if r.data.tags.get(tracking.TAG_KIND) == "sweep"]
    assert [p.info.run_id for p in parents] == [manifest.parent_run_id]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["search.trials"] == "4"
    # A few key params, the whole config as an artifact: val_reward is not buried under ~120 columns.
    assert set(parent.data.params) <= set(tracking.KEY_PARAMS)
    logged = yaml.safe_load(
        Path(client.download_artifacts(parent.info.run_id, tracking.CONFIG_ARTIFACT)).read_text()
    )
    assert logged == manifest.config
    assert parent.data.metrics["recommended_val_reward"] == pytest.approx(sweep.results.recommended.mean)
    assert parent.data.tags["recommended_trial_id"] == sweep.results.recommended.trial_id
    # The run-table view `dense-reward ui` opens: trials by val_reward, with their weights.
    tag = f"{tracking.SHARED_VIEW_TAG_PREFIX}{tracking.RUNS_VIEW_KEY}"
    view = json.loads(client.get_experiment(manifest.experiment_id).tags[tag])
    assert view["orderByKey"] == "metrics.`val_reward`"
    assert {"metrics.`val_reward`", "params.`weights.shap`"} <= set(view["selectedColumns"])
    assert parent.data.tags[tracking.TAG_RUN_DIR] == manifest.run_dir
    assert parent.data.metrics["best_val_reward"] == pytest.approx(sweep.results.best.best_val_reward)

    children = tracking.child_runs(client, manifest.experiment_id, manifest.parent_run_id)
    assert sorted(c.data.tags[tracking.TAG_TRIAL_ID] for c in children) == sorted(
        row.trial_id for row in sweep.results.trials
    )
    for child in children:
        assert child.info.status == "FINISHED"
        history = client.get_metric_history(child.info.run_id, "val_reward")
        assert sorted(m.step for m in history) == [1, 2]
        sems = client.get_metric_history(child.info.run_id, "val_reward_sem")
        assert sorted(m.step for m in sems) == [1, 2] and all(m.value >= 0.0 for m in sems)
        for key in ("train_reward", "value_loss", "policy_loss", "kl", "entropy", "attribution_seconds"):
            assert key in child.data.metrics
        # A worker holding torch, transformers and the tiny models: well above 100 MiB, far below 100 GiB.
        assert 100 < child.data.metrics["peak_rss_mb"] < 100_000
        assert float(child.data.params["weights.sparse"]) >= 0.0
        assert child.data.tags[tracking.TAG_NODE]
        assert child.data.tags[tracking.TAG_RAY_NODE_ID]
        assert Path(child.data.tags[tracking.TAG_CHECKPOINT]).is_dir()
        heatmaps = client.list_artifacts(child.info.run_id, "heatmaps")
        assert [f.path for f in heatmaps] == ["heatmaps/epoch_001.html", "heatmaps/epoch_002.html"]
        page = Path(client.download_artifacts(child.info.run_id, heatmaps[1].path)).read_text()
        # One response (evaluation.heatmap_samples = 1) with the mix and every source as rows.
        assert page.count("sample 0") == 1
        for row in ("dense", "sparse", "attention", "redistribution", "shap", "lime"):
            assert row in page


def test_sweep_artifacts_are_logged_to_the_parent(sweep: SweepOutcome, client: MlflowClient) -> None:
    run_id = sweep.manifest.parent_run_id
    assert {f.path for f in client.list_artifacts(run_id)} >= {"results.csv", "results.json", "plots"}
    assert {f.path for f in client.list_artifacts(run_id, "plots")} == {
        "plots/bo_convergence.png",
        "plots/weights.png",
    }
    rows = list(csv.DictReader(Path(client.download_artifacts(run_id, "results.csv")).read_text().splitlines()))
    assert len(rows) == 4
    assert all(float(row["val_reward_sem"]) >= 0.0 for row in rows)
    roles = {row["trial_id"]: row["role"] for row in rows}
    assert "recommended" in roles[sweep.results.recommended.trial_id]
    assert "best observed" in roles[sweep.results.best.trial_id]


def test_best_checkpoint_loads_into_a_fresh_run(sweep: SweepOutcome) -> None:
    best = sweep.results.best
    state = read_run_state(best.best_checkpoint)
    assert state["trial_id"] == best.trial_id
    config, weights, seed = trial_arguments(sweep.manifest.load_config().library_config(), best.trial_config)
    assert state["weights"] == pytest.approx(weights)
    run = Run(config, weights, seed=seed)
    loaded = run.load(best.best_checkpoint)
    assert run.trainer.step_count == loaded["epoch"] * config.ppo.steps_per_epoch


def test_results_command_prints_the_table_as_json(
    sweep: SweepOutcome, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["results", sweep.manifest.run_dir, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["best_observed"]["trial_id"] == sweep.results.best.trial_id
    assert payload["recommended"]["trial_id"] == sweep.results.recommended.trial_id
    assert len(payload["trials"]) == 4
    assert all(trial["val_reward_sem"] is not None for trial in payload["trials"])


def test_results_command_shows_best_observed_and_recommended(
    sweep: SweepOutcome, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["results", sweep.manifest.run_dir]) == 0
    out = capsys.readouterr().out
    recommended = sweep.results.recommended
    best_line = next(line for line in out.splitlines() if line.startswith("best observed:"))
    recommended_line = next(line for line in out.splitlines() if line.startswith("recommended:"))
    assert sweep.results.best.trial_id in best_line
    kind = "observed" if recommended.fallback else "GP posterior mean"
    assert f"val_reward {kind} {recommended.mean:.4f} [{recommended.lower:.4f}, {recommended.upper:.4f}]" in (
        recommended_line
    )
    assert "val_reward ± s.e." in out
    # The tiny sweep starts from sparse-only, so the comparison the demo prints is there too.
    assert "against sparse-only" in out and any(line.strip().startswith("sparse-only") for line in out.splitlines())


def test_final_trains_on_and_registers_a_model_version(
    sweep: SweepOutcome, client: MlflowClient, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    out = tmp_path / "final"
    assert main(["final", sweep.manifest.run_dir, "--steps", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"trained the recommended trial {sweep.results.recommended.trial_id}" in printed
    assert "registered: e2e version 1" in printed
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "gpt2"
    assert (out / "model.safetensors").is_file()
    assert (
        json.loads((out / "dense_reward.json").read_text())["source_trial"]
        == sweep.results.recommended.trial_id
    )

    versions = client.search_model_versions("name='e2e'")
    assert [v.version for v in versions] == ["1"] or [int(v.version) for v in versions] == [1]
    finals = tracking.child_runs(
        client, sweep.manifest.experiment_id, sweep.manifest.parent_run_id, kind="final"
    )
    assert len(finals) == 1 and finals[0].info.run_id == versions[0].run_id
    assert finals[0].info.status == "FINISHED"
    assert "val_reward" in finals[0].data.metrics
    assert "model/model.safetensors" in {
        f.path for f in client.list_artifacts(finals[0].info.run_id, "model")
    }


def test_final_with_a_missing_checkpoint_is_one_clear_error(
    sweep: SweepOutcome, client: MlflowClient, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = Path(sweep.results.recommended_trial.best_checkpoint)
    aside = checkpoint.with_name(checkpoint.name + ".aside")
    runs_before = len(client.search_runs([sweep.manifest.experiment_id]))
    checkpoint.rename(aside)
    try:
        assert main(["final", sweep.manifest.run_dir, "--steps", "1"]) == 2
    finally:
        aside.rename(checkpoint)
    err = capsys.readouterr().err
    assert "checkpoint" in err and "missing" in err and str(checkpoint) in err
    assert len(client.search_runs([sweep.manifest.experiment_id])) == runs_before


def test_a_cut_short_ray_snapshot_stops_resume_and_results_and_changes_nothing(
    sweep: SweepOutcome, client: MlflowClient, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = sweep.manifest
    snapshot = max(Path(manifest.experiment_path).glob("experiment_state-*.json"))
    whole = snapshot.read_bytes()

    def record() -> list[tuple[str, str, str, int | None]]:
        runs = client.search_runs([manifest.experiment_id], run_view_type=ViewType.ALL)
        return sorted((r.info.run_id, r.info.status, r.info.lifecycle_stage, r.info.end_time) for r in runs)

    before = record()
    # What a driver killed while Ray copied its snapshot into storage leaves behind.
    snapshot.write_bytes(whole[: len(whole) // 2])
    try:
        assert main(["sweep", "--resume", "--run-dir", manifest.run_dir]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1
        assert "cannot be resumed" in err and str(snapshot) in err and "cut short" in err
        # Without the check, Ray restarted the experiment from scratch and every recorded trial's
        # MLflow run was soft-deleted as lost.
        assert record() == before
        assert main(["results", manifest.run_dir]) == 2
        err = capsys.readouterr().err
        assert str(snapshot) in err and "cut short" in err
    finally:
        snapshot.write_bytes(whole)
    assert record() == before
