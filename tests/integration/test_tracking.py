"""MLflow tracking against a real sqlite store: parent and child runs, reuse on resume, the driver's view of
trial runs, final runs and their model versions, bad URIs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tune_jobs import tracking
from tune_jobs.config import SweepConfig


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowClient, str, Path]:
    """One sqlite store for the module (creating its tables takes seconds)."""
    run_dir = tmp_path_factory.mktemp("tracking")
    client = tracking.connect(tracking.default_tracking_uri(run_dir))
    experiment_id = tracking.ensure_experiment(client, "tests", tracking.default_artifact_location(run_dir))
    return client, experiment_id, run_dir


def test_connect_creates_the_sqlite_store_beside_the_run_dir(store: tuple[MlflowClient, str, Path]) -> None:
    client, experiment_id, run_dir = store
    assert (run_dir / "mlflow.db").is_file()
    assert (
        client.get_experiment(experiment_id).artifact_location == (run_dir / "mlartifacts").resolve().as_uri()
    )
    assert tracking.ensure_experiment(client, "tests", None) == experiment_id


def test_unreachable_server_fails_fast_with_the_uri_in_the_message() -> None:
    started = time.monotonic()
    with pytest.raises(tracking.TrackingError) as raised:
        tracking.connect("http://127.0.0.1:9")
    # One short line, not urllib3's account of its retries.
    assert (
        str(raised.value)
        == "tracking.uri: cannot reach the MLflow store 'http://127.0.0.1:9': connection refused"
    )
    # No retry loop with backoff: a refused connection is reported at once.
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("uri", ["ftp://host/store", "sqlite://relative.db", "mlruns"])
def test_unsupported_uris_are_user_errors(uri: str) -> None:
    with pytest.raises(tracking.TrackingError, match="tracking.uri"):
        tracking.connect(uri)


def test_parent_run_logs_key_params_and_the_config_and_resumes_the_same_run(
    store: tuple[MlflowClient, str, Path], tiny_config: SweepConfig
) -> None:
    client, experiment_id, run_dir = store
    config = tiny_config.with_overrides({"ppo.kl_coef": 0.05}).model_dump(mode="json")
    parent = tracking.start_sweep_run(client, experiment_id, "sweep-a", config, run_dir)
    run = client.get_run(parent)
    # A dozen key params, not the ~120 fields of the config, so val_reward shows in the UI's run table.
    assert len(tracking.flatten(config)) > 60
    assert set(run.data.params) == set(tracking.KEY_PARAMS)
    assert run.data.params["ppo.kl_coef"] == "0.05"
    assert run.data.params["search.searcher"] == "botorch"
    assert run.data.params["shaping.sources"] == '["sparse", "attention", "redistribution", "shap", "lime"]'
    logged = yaml.safe_load(Path(client.download_artifacts(parent, tracking.CONFIG_ARTIFACT)).read_text())
    assert logged == config
    assert run.data.tags[tracking.TAG_KIND] == "sweep"
    assert run.data.tags[tracking.TAG_RUN_DIR] == str(run_dir.resolve())
    client.set_terminated(parent, status="KILLED")
    assert (
        tracking.start_sweep_run(client, experiment_id, "sweep-a", config, run_dir, parent_run_id=parent)
        == parent
    )
    assert client.get_run(parent).info.status == "RUNNING"
    with pytest.raises(tracking.TrackingError, match="is not in"):
        tracking.start_sweep_run(client, experiment_id, "sweep-a", config, run_dir, parent_run_id="f" * 32)


def test_a_reopened_trial_logs_into_the_same_child_once_per_epoch(
    store: tuple[MlflowClient, str, Path],
) -> None:
    client, experiment_id, run_dir = store
    parent = tracking.start_sweep_run(client, experiment_id, "sweep-b", {}, run_dir)
    target = tracking.TrackingTarget(client.tracking_uri, experiment_id, parent)

    first = tracking.TrialTracker(target, "abc_00000", "trial 0")
    first.log_start({"weights": {"sparse": 0.25, "attention": 0.75}, "ppo.kl_coef": 0.1}, node_id="node-1")
    first.log_epoch(
        1, {"val_reward": 0.5, "val_reward_sem": 0.04, "kl": float("nan"), "flag": True}, "/ckpt/1"
    )
    first.log_text("<html>credit</html>", "heatmaps/epoch_001/sample_0.html")

    # The process dies; a retry (or a resumed sweep) opens the trial again and redoes epoch 1.
    second = tracking.TrialTracker(target, "abc_00000", "trial 0")
    assert second.run_id == first.run_id
    assert second.logged_epochs == 1
    second.log_epoch(1, {"val_reward": 0.9})
    second.log_epoch(2, {"val_reward": 0.7, "val_reward_sem": 0.03}, checkpoint="/ckpt/2")
    second.finish()

    other = tracking.TrialTracker(target, "abc_00001", "trial 1")
    assert other.run_id != first.run_id
    children = tracking.child_runs(client, experiment_id, parent)
    assert [c.info.run_id for c in children] == [first.run_id, other.run_id]

    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["weights.attention"] == "0.75"
    assert run.data.params["ppo.kl_coef"] == "0.1"
    assert run.data.tags[tracking.TAG_NODE]
    assert run.data.tags[tracking.TAG_RAY_NODE_ID] == "node-1"
    assert run.data.tags[tracking.TAG_CHECKPOINT] == "/ckpt/2"
    history = sorted((m.step, m.value) for m in client.get_metric_history(first.run_id, "val_reward"))
    assert history == [(1, 0.5), (2, 0.7)]
    sems = sorted((m.step, m.value) for m in client.get_metric_history(first.run_id, "val_reward_sem"))
    assert sems == [(1, 0.04), (2, 0.03)]
    assert "kl" not in run.data.metrics
    assert [f.path for f in client.list_artifacts(first.run_id, "heatmaps/epoch_001")] == [
        "heatmaps/epoch_001/sample_0.html"
    ]


def test_params_survive_a_changed_value_on_reopen(store: tuple[MlflowClient, str, Path]) -> None:
    client, experiment_id, _ = store
    run_id = client.create_run(experiment_id).info.run_id
    tracking.log_params(client, run_id, {"a": "1"})
    tracking.log_params(client, run_id, {"a": "2", "b": "3"})
    assert client.get_run(run_id).data.params == {"a": "1", "b": "3"}


def test_flatten_nests_with_dots_and_cuts_long_values() -> None:
    flat = tracking.flatten({"a": {"b": 1, "c": {"d": None}}, "e": [1, 2], "f": "x" * 7000, "g": {}})
    assert flat["a.b"] == "1"
    assert flat["a.c.d"] == "None"
    assert flat["e"] == "[1, 2]"
    assert len(flat["f"]) == tracking.MAX_PARAM_CHARS
    assert flat["g"] == "{}"


def test_the_driver_closes_fails_tags_and_retires_trial_runs(store: tuple[MlflowClient, str, Path]) -> None:
    client, experiment_id, run_dir = store
    parent = tracking.start_sweep_run(client, experiment_id, "sweep-c", {}, run_dir)
    target = tracking.TrackingTarget(client.tracking_uri, experiment_id, parent)
    stopped, failed, lost = (tracking.TrialTracker(target, f"c_{i}", f"trial {i}") for i in range(3))

    tracking.tag_checkpoint(target, "c_0", "/ckpt/c0")
    tracking.close_child(target, "c_0", early_stopped=True)
    tracking.fail_trial(target, "c_1")
    # A run already closed is left as it is.
    tracking.close_child(target, "c_1")
    retired = tracking.retire_unknown_trials(target, {"c_0", "c_1"}, "lost in a crash")

    run = client.get_run(stopped.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[tracking.TAG_EARLY_STOPPED] == "true"
    assert run.data.tags[tracking.TAG_CHECKPOINT] == "/ckpt/c0"
    assert client.get_run(failed.run_id).info.status == "FAILED"
    assert retired == [lost.run_id]
    gone = client.get_run(lost.run_id)
    assert gone.info.lifecycle_stage == "deleted" and gone.info.status == "KILLED"
    assert gone.data.tags[tracking.TAG_SUPERSEDED] == "lost in a crash"
    assert [c.info.run_id for c in tracking.child_runs(client, experiment_id, parent)] == [
        stopped.run_id,
        failed.run_id,
    ]


def test_each_final_run_is_its_own_run_and_model_version(
    store: tuple[MlflowClient, str, Path], tmp_path: Path
) -> None:
    client, experiment_id, run_dir = store
    parent = tracking.start_sweep_run(client, experiment_id, "sweep-d", {}, run_dir)
    target = tracking.TrackingTarget(client.tracking_uri, experiment_id, parent)
    versions = {}
    for attempt in (1, 2):
        tracker = tracking.TrialTracker(target, "final", "final", kind="final", new_run=True)
        tracker.log_metrics({"kl": 0.1 * attempt, "skipped": float("inf")}, step=1, prefix="train/")
        model = tmp_path / f"model_{attempt}"
        model.mkdir()
        (model / "weights.txt").write_text(f"attempt {attempt}")
        tracker.log_artifacts(model, "model")
        versions[tracker.run_id] = tracker.register_model("sweep-d-model")
        tracker.finish()
    assert list(versions.values()) == ["1", "2"]
    finals = tracking.child_runs(client, experiment_id, parent, kind="final")
    assert [f.info.run_id for f in finals] == list(versions)
    for run_id, version in versions.items():
        run = client.get_run(run_id)
        assert run.data.tags[tracking.TAG_REGISTERED_MODEL] == f"sweep-d-model/{version}"
        assert "train/skipped" not in run.data.metrics
        registered = client.get_model_version("sweep-d-model", version)
        assert registered.run_id == run_id
        # Each version points at its own run's files, not at the last run's.
        assert registered.source.startswith(run.info.artifact_uri)
    assert client.get_run(list(versions)[1]).data.metrics["train/kl"] == pytest.approx(0.2)
