"""MLflow tracking against a real sqlite store: parent and child runs, reuse on resume, bad URIs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tune_jobs import tracking


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
    assert client.get_experiment(experiment_id).artifact_location == (run_dir / "mlartifacts").resolve().as_uri()
    assert tracking.ensure_experiment(client, "tests", None) == experiment_id


def test_unreachable_server_fails_fast_with_the_uri_in_the_message() -> None:
    started = time.monotonic()
    with pytest.raises(tracking.TrackingError, match=r"cannot reach the MLflow store 'http://127\.0\.0\.1:9'"):
        tracking.connect("http://127.0.0.1:9")
    # No retry loop with backoff: a refused connection is reported at once.
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("uri", ["ftp://host/store", "sqlite://relative.db", "mlruns"])
def test_unsupported_uris_are_user_errors(uri: str) -> None:
    with pytest.raises(tracking.TrackingError, match="tracking.uri"):
        tracking.connect(uri)


def test_parent_run_logs_the_config_and_resumes_the_same_run(store: tuple[MlflowClient, str, Path]) -> None:
    client, experiment_id, run_dir = store
    config = {"ppo": {"kl_coef": 0.05, "epochs": 2}, "shaping": {"sources": ["sparse", "attention"]}}
    parent = tracking.start_sweep_run(client, experiment_id, "sweep-a", config, run_dir)
    run = client.get_run(parent)
    assert run.data.params["ppo.kl_coef"] == "0.05"
    assert run.data.params["shaping.sources"] == '["sparse", "attention"]'
    assert run.data.tags[tracking.TAG_KIND] == "sweep"
    assert run.data.tags[tracking.TAG_RUN_DIR] == str(run_dir.resolve())
    client.set_terminated(parent, status="KILLED")
    assert tracking.start_sweep_run(client, experiment_id, "sweep-a", config, run_dir, parent_run_id=parent) == parent
    assert client.get_run(parent).info.status == "RUNNING"
    with pytest.raises(tracking.TrackingError, match="is not in"):
        tracking.start_sweep_run(client, experiment_id, "sweep-a", config, run_dir, parent_run_id="f" * 32)


def test_a_reopened_trial_logs_into_the_same_child_once_per_epoch(store: tuple[MlflowClient, str, Path]) -> None:
    client, experiment_id, run_dir = store
    parent = tracking.start_sweep_run(client, experiment_id, "sweep-b", {}, run_dir)
    target = tracking.TrackingTarget(client.tracking_uri, experiment_id, parent)

    first = tracking.TrialTracker(target, "abc_00000", "trial 0")
    first.log_start({"weights": {"sparse": 0.25, "attention": 0.75}, "ppo.kl_coef": 0.1}, node_id="node-1")
    first.log_epoch(1, {"val_reward": 0.5, "kl": float("nan"), "flag": True}, checkpoint="/ckpt/1")
    first.log_text("<html>credit</html>", "heatmaps/epoch_001/sample_0.html")

    # The process dies; a retry (or a resumed sweep) opens the trial again and redoes epoch 1.
    second = tracking.TrialTracker(target, "abc_00000", "trial 0")
    assert second.run_id == first.run_id
    assert second.logged_epochs == 1
    second.log_epoch(1, {"val_reward": 0.9})
    second.log_epoch(2, {"val_reward": 0.7}, checkpoint="/ckpt/2")
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
