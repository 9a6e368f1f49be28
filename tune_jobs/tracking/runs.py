"""The runs of a sweep: one parent run per sweep, one nested child run per trial, one per final training.

The driver opens the parent run (the config as a YAML artifact plus a few key params, the run dir as a
tag) and, at the end, logs the sweep's artifacts (BO convergence plot, weights plot, results CSV). It
also closes, tags and retires trials' child runs the trials could not close themselves. Trials run in
Ray worker processes and log through a :class:`TrialTracker`: weights and knobs as params, every
reported metric per epoch (``step=epoch``), the checkpoint location as a tag and token-reward heatmaps
as HTML artifacts. Final training logs through a tracker too and registers its model version.
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from tune_jobs.config import METRIC
from tune_jobs.tracking.store import (
    TAG_KIND,
    TAG_TRIAL_ID,
    TrackingError,
    TrackingTarget,
    child_runs,
    find_child,
    finite_metrics,
    flatten,
    log_params,
    log_tags,
    new_child,
    open_child,
)

TAG_SWEEP = "dense_reward.sweep"
TAG_RUN_DIR = "dense_reward.run_dir"
TAG_CHECKPOINT = "checkpoint"
TAG_NODE = "node"
TAG_RAY_NODE_ID = "ray_node_id"
TAG_SUPERSEDED = "dense_reward.superseded"
TAG_EARLY_STOPPED = "early_stopped"
TAG_REGISTERED_MODEL = "registered_model"
TAG_PHASE = "dense_reward.phase"
"""``confirmation`` on the confirmation run and on each of its trials' runs."""
CONFIRMATION = "confirmation"
SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
"""The experiment tag prefix under which MLflow's UI looks up a shared view of the run table."""
RUNS_VIEW_KEY = "dense-reward"
"""The key of the run-table view `share_runs_view` stores (``?viewStateShareKey=dense-reward``)."""
CONFIG_ARTIFACT = "config.yaml"
"""The sweep's whole config, as an artifact of the parent run."""
KEY_PARAMS = tuple(
    "name seed search.searcher search.trials shaping.sources shaping.normalize "
    "ppo.epochs ppo.learning_rate ppo.kl_coef ppo.batch_size models.policy.path models.reward.path".split()
)
"""The config fields logged as params of the parent run. The whole config (~120 fields) would bury
``val_reward`` behind a hundred columns of the MLflow UI's run table; it is logged as `CONFIG_ARTIFACT`."""


def key_params(config: Mapping[str, Any]) -> dict[str, str]:
    """The `KEY_PARAMS` of a config dict, flattened (fields the config lacks are left out)."""
    flat = flatten(config)
    return {key: flat[key] for key in KEY_PARAMS if key in flat}


def start_sweep_run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    config: Mapping[str, Any],
    run_dir: Path,
    parent_run_id: str | None = None,
) -> str:
    """Open the sweep's parent run (a new one, or `parent_run_id` again on resume).

    A new run gets the config as the artifact `CONFIG_ARTIFACT` and its `KEY_PARAMS` as params.
    """
    if parent_run_id is not None:
        try:
            run = client.get_run(parent_run_id)
        except MlflowException:
            raise TrackingError(
                f"the sweep's MLflow run {parent_run_id} is not in {client.tracking_uri}; "
                "was the tracking store moved or deleted?"
            ) from None
        if run.info.lifecycle_stage == "deleted":
            raise TrackingError(
                f"the sweep's MLflow run {parent_run_id} is deleted; restore it in MLflow first"
            )
        client.update_run(parent_run_id, status="RUNNING")
        return parent_run_id
    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={TAG_KIND: "sweep", TAG_SWEEP: name, TAG_RUN_DIR: str(run_dir.resolve())},
    )
    log_params(client, run.info.run_id, key_params(config))
    client.log_text(run.info.run_id, yaml.safe_dump(dict(config), sort_keys=False), CONFIG_ARTIFACT)
    return run.info.run_id


def end_run(uri: str, run_id: str, status: str) -> None:
    """Close a run (`FINISHED`, `FAILED` or `KILLED`)."""
    MlflowClient(tracking_uri=uri).set_terminated(run_id, status=status)


def share_runs_view(client: MlflowClient, experiment_id: str, sources: list[str], knobs: list[str]) -> None:
    """Store the experiment's run-table view that `RUNS_VIEW_KEY` opens: trials by val_reward, with weights.

    MLflow's run table shows no metric or param column by default; a view stored as an experiment tag
    (MLflow's own "shared view", opened by ``?viewStateShareKey=<key>`` on the runs page) shows each
    trial's status, ``val_reward`` and its standard error, weights and knobs, best first.
    """
    columns = [f"metrics.`{name}`" for name in (METRIC, f"{METRIC}_sem", "gold_reward")]
    columns += [f"params.`weights.{source}`" for source in sources] + [f"params.`{knob}`" for knob in knobs]
    state = {
        "orderByKey": f"metrics.`{METRIC}`",
        "orderByAsc": False,
        "selectedColumns": ["attributes.`Duration`", *columns],
    }
    client.set_experiment_tag(experiment_id, f"{SHARED_VIEW_TAG_PREFIX}{RUNS_VIEW_KEY}", json.dumps(state))


def log_sweep_outcome(
    uri: str,
    run_id: str,
    files: list[tuple[Path, str | None]],
    summary: Mapping[str, Any],
    metrics: Mapping[str, float | None],
    tags: Mapping[str, str],
    status: str,
) -> None:
    """The end of a sweep on its parent run: files (path, artifact folder), ``results.json``, metrics, tags; close it."""
    client = MlflowClient(tracking_uri=uri)
    for path, folder in files:
        client.log_artifact(run_id, str(path), folder)
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "results.json"
        summary_path.write_text(json.dumps(summary, indent=2))
        client.log_artifact(run_id, str(summary_path))
    for key, value in finite_metrics(metrics).items():
        client.log_metric(run_id, key, value)
    if tags:
        log_tags(client, run_id, tags)
    client.set_terminated(run_id, status=status)


# --------------------------------------------------------------------------------------------------
# trials' child runs, seen from the driver
# --------------------------------------------------------------------------------------------------


def _trial_child(target: TrackingTarget, trial_id: str) -> tuple[MlflowClient, str | None]:
    client = MlflowClient(tracking_uri=target.uri)
    run_id = find_child(
        client, target.experiment_id, target.parent_run_id, {TAG_KIND: "trial", TAG_TRIAL_ID: trial_id}
    )
    return client, run_id


def fail_trial(target: TrackingTarget, trial_id: str) -> None:
    """Mark a trial's child run FAILED (its trial failed for good)."""
    client, run_id = _trial_child(target, trial_id)
    if run_id is not None:
        client.set_terminated(run_id, status="FAILED")


def close_child(target: TrackingTarget, trial_id: str, early_stopped: bool = False) -> None:
    """Mark a trial's child run FINISHED if it is still RUNNING (its trial ended without closing it).

    `early_stopped` tags it as stopped by the scheduler before its last epoch.
    """
    client, run_id = _trial_child(target, trial_id)
    if run_id is None or client.get_run(run_id).info.status != "RUNNING":
        return
    if early_stopped:
        client.set_tag(run_id, TAG_EARLY_STOPPED, "true")
    client.set_terminated(run_id, status="FINISHED")


def tag_checkpoint(target: TrackingTarget, trial_id: str, path: str) -> None:
    """Tag a trial's child run with the checkpoint Ray persisted for it."""
    client, run_id = _trial_child(target, trial_id)
    if run_id is not None:
        client.set_tag(run_id, TAG_CHECKPOINT, path)


def retire_unknown_trials(target: TrackingTarget, known: set[str], reason: str) -> list[str]:
    """Soft-delete the trial child runs whose trial id is not in `known`; returns their run ids.

    Each is tagged with `reason`, marked KILLED, then deleted (MLflow can restore it), never purged.
    """
    client = MlflowClient(tracking_uri=target.uri)
    children = child_runs(client, target.experiment_id, target.parent_run_id)
    lost = [c.info.run_id for c in children if c.data.tags.get(TAG_TRIAL_ID) not in known]
    for run_id in lost:
        client.set_tag(run_id, TAG_SUPERSEDED, reason)
        client.set_terminated(run_id, status="KILLED")
        client.delete_run(run_id)
    return lost


def open_confirmation_run(target: TrackingTarget, name: str) -> TrackingTarget:
    """The sweep's confirmation run (a child of the sweep run, found again on resume), set RUNNING.

    Returns the target its trials log under: their child runs nest in the confirmation run, so the
    sweep's own trial runs (and `retire_unknown_trials` on them) never mix with the re-runs.
    """
    client = MlflowClient(tracking_uri=target.uri)
    run_id = open_child(client, target.experiment_id, target.parent_run_id, CONFIRMATION, CONFIRMATION, name)
    client.set_tag(run_id, TAG_PHASE, CONFIRMATION)
    return TrackingTarget(target.uri, target.experiment_id, run_id)


def tag_trial(target: TrackingTarget, trial_id: str, tags: Mapping[str, str]) -> bool:
    """Set tags on a trial's child run; False when the trial has no run yet."""
    client, run_id = _trial_child(target, trial_id)
    if run_id is None:
        return False
    log_tags(client, run_id, tags)
    return True


# --------------------------------------------------------------------------------------------------
# one trial's (or final training's) child run, in the process that trains
# --------------------------------------------------------------------------------------------------


class TrialTracker:
    """The MLflow child run of one trial, opened (or found again) in the trial's own process.

    Args:
        target: the store, experiment and parent run of the sweep.
        trial_id: Ray's trial id; the child run is looked up by it.
        trial_name: the child run's display name.
        kind: ``trial`` for sweep trials, ``final`` for final training.
        new_run: always create a new child run instead of reopening the one with this `trial_id`
            (each final training is its own run).
    """

    def __init__(
        self,
        target: TrackingTarget,
        trial_id: str,
        trial_name: str,
        kind: str = "trial",
        new_run: bool = False,
    ) -> None:
        self.client = MlflowClient(tracking_uri=target.uri)
        ids = (self.client, target.experiment_id, target.parent_run_id, kind, trial_id, trial_name)
        self.run_id = new_child(*ids) if new_run else open_child(*ids)
        self.logged_epochs = self._last_logged_epoch()

    def _last_logged_epoch(self) -> int:
        history = self.client.get_metric_history(self.run_id, METRIC)
        return max((m.step for m in history), default=0)

    @property
    def artifact_uri(self) -> str:
        """Where this run's artifacts live."""
        return self.client.get_run(self.run_id).info.artifact_uri

    def log_start(self, params: Mapping[str, Any], node_id: str | None = None) -> None:
        """Weights and knobs as params; the host and Ray node that run this attempt as tags."""
        log_params(self.client, self.run_id, flatten(params))
        tags = {TAG_NODE: socket.gethostname()}
        if node_id:
            tags[TAG_RAY_NODE_ID] = node_id
        log_tags(self.client, self.run_id, tags)

    def log_epoch(self, epoch: int, metrics: Mapping[str, Any], checkpoint: str | None = None) -> None:
        """Every finite metric at ``step=epoch`` (skipped when the epoch is logged already) and the checkpoint tag."""
        if epoch > self.logged_epochs:
            self.log_metrics(metrics, step=epoch)
            self.logged_epochs = epoch
        if checkpoint is not None:
            self.client.set_tag(self.run_id, TAG_CHECKPOINT, checkpoint)

    def log_metrics(self, metrics: Mapping[str, Any], step: int, prefix: str = "") -> None:
        """Every finite metric at `step`, named ``<prefix><key>`` (e.g. ``train/kl`` per final PPO step)."""
        now = int(time.time() * 1000)
        batch = [Metric(f"{prefix}{k}", v, now, step) for k, v in finite_metrics(metrics).items()]
        for start in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[start : start + 1000])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        log_tags(self.client, self.run_id, tags)

    def log_text(self, text: str, artifact_file: str) -> None:
        """One text artifact (e.g. an HTML heatmap) at `artifact_file` inside the run's artifacts."""
        self.client.log_text(self.run_id, text, artifact_file)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        """A folder of artifacts."""
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def register_model(self, name: str, artifact_path: str = "model") -> str:
        """A new version of registered model `name` from this run's `artifact_path`; returns the version number.

        The version's source is the run's artifact folder, so it works offline on a sqlite store, and each
        run registers its own files. The run is tagged ``registered_model = <name>/<version>``.
        """
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, tags={TAG_KIND: "final"})
        source = f"{self.artifact_uri}/{artifact_path}"
        version = str(self.client.create_model_version(name, source=source, run_id=self.run_id).version)
        self.set_tags({TAG_REGISTERED_MODEL: f"{name}/{version}"})
        return version

    def finish(self, status: str = "FINISHED") -> None:
        """Close the run (`FINISHED`, `FAILED` or `KILLED`)."""
        self.client.set_terminated(self.run_id, status=status)
