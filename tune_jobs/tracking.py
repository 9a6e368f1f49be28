"""MLflow bookkeeping of a sweep: one parent run per sweep, one nested child run per trial.

The driver opens the parent run (config as params, the run dir as a tag) and, at the end, logs the
sweep's artifacts (BO convergence plot, weights plot, results CSV). Trials run in Ray worker
processes and log to MLflow themselves through a :class:`TrialTracker`: weights and knobs as params,
every reported metric per epoch (``step=epoch``), the checkpoint location as a tag and token-reward
heatmaps as HTML artifacts.

MLflow does not let a client choose run ids, so a trial's child run is found by its tags
(``trial_id`` under the parent) before one is created: a retried trial or a resumed sweep keeps
logging into the same child, never a duplicate. Epochs already in a child's history are not logged
again, so a trial resumed from an older checkpoint leaves one value per epoch.

Everything goes through an explicit :class:`mlflow.MlflowClient`; no global "active run" state is
used, so several trials in one process cannot mix their runs.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from dense_reward.errors import UserError

TAG_KIND = "dense_reward.kind"
"""`sweep` on the parent run, `trial` on a trial's child run, `final` on the final training run."""
TAG_SWEEP = "dense_reward.sweep"
TAG_RUN_DIR = "dense_reward.run_dir"
TAG_TRIAL_ID = "trial_id"
TAG_CHECKPOINT = "checkpoint"
TAG_NODE = "node"
TAG_RAY_NODE_ID = "ray_node_id"
TAG_SUPERSEDED = "dense_reward.superseded"
MAX_PARAM_CHARS = 6000
"""MLflow rejects longer param values."""
BATCH_LIMIT = 100
"""Most params (and tags) one `log_batch` call takes."""


class TrackingError(UserError):
    """The MLflow tracking store cannot be reached or used; the message names the URI."""


def default_tracking_uri(run_dir: str | Path) -> str:
    """The embedded store of a run dir: ``sqlite:///<run dir>/mlflow.db``."""
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def default_artifact_location(run_dir: str | Path) -> str:
    """Where artifacts of a sqlite store live: ``<run dir>/mlartifacts`` (beside the database)."""
    return (Path(run_dir).resolve() / "mlartifacts").as_uri()


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"ppo.kl_coef": "0.05", ...}``; lists become JSON, long values are cut."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}."))
            continue
        text = json.dumps(value) if isinstance(value, list | dict) else str(value)
        flat[name] = text[:MAX_PARAM_CHARS]
    return flat


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric, finite entries of a result dict (MLflow refuses NaN in some stores)."""
    clean = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            clean[key] = float(value)
    return clean


@contextmanager
def _quick_http() -> Iterator[None]:
    """Fail fast on an unreachable server: no retries, a short timeout (restored afterwards)."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "10"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def connect(uri: str) -> MlflowClient:
    """A client on `uri`, checked to answer; raises `TrackingError` naming the URI otherwise.

    A ``sqlite:///`` store is created (with its folder) when missing.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///"))
        if not uri.startswith("sqlite:///"):
            raise TrackingError(f"tracking.uri: a sqlite URI looks like sqlite:////abs/path/mlflow.db, got {uri!r}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TrackingError(f"tracking.uri: cannot create the folder of {uri!r}: {error}") from None
    elif parsed.scheme not in ("http", "https", "postgresql", "mysql", "mssql", "databricks"):
        raise TrackingError(
            f"tracking.uri: unsupported tracking URI {uri!r}; use sqlite:///<file>, http(s)://<server> or a database URI"
        )
    client = MlflowClient(tracking_uri=uri)
    try:
        with _quick_http():
            client.search_experiments(max_results=1)
    except Exception as error:  # noqa: BLE001 - any failure here means the store is unusable
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TrackingError(f"tracking.uri: cannot reach the MLflow store {uri!r}: {reason}") from None
    return client


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of experiment `name`, created (with `artifact_location`) when missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise TrackingError(f"tracking.experiment: experiment {name!r} is deleted; restore it or pick another name")
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:
        # Another process created it between the lookup and the create.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    """Log params in batches; a param already logged with the same value is fine (resumed sweeps)."""
    items = list(params.items())
    for start in range(0, len(items), BATCH_LIMIT):
        batch = [Param(k, v) for k, v in items[start : start + BATCH_LIMIT]]
        try:
            client.log_batch(run_id, params=batch)
        except MlflowException:
            # A changed value of an existing param is refused as a whole batch; log what is new.
            existing = client.get_run(run_id).data.params
            fresh = [p for p in batch if p.key not in existing]
            if fresh:
                client.log_batch(run_id, params=fresh)


def log_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    """Set tags in batches."""
    items = [RunTag(k, str(v)) for k, v in tags.items()]
    for start in range(0, len(items), BATCH_LIMIT):
        client.log_batch(run_id, tags=items[start : start + BATCH_LIMIT])


def find_child(client: MlflowClient, experiment_id: str, parent_run_id: str, tags: Mapping[str, str]) -> str | None:
    """The oldest child of `parent_run_id` carrying every tag in `tags`, or None."""
    conditions = [f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'"]
    conditions += [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
    runs = client.search_runs(
        [experiment_id], filter_string=" and ".join(conditions), order_by=["attributes.start_time ASC"], max_results=1
    )
    return runs[0].info.run_id if runs else None


def child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str, kind: str = "trial") -> list[Any]:
    """Every child run of the parent with ``dense_reward.kind == kind``, oldest first."""
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}' and tags.`{TAG_KIND}` = '{kind}'",
        order_by=["attributes.start_time ASC"],
        max_results=5000,
    )


def retire_children(client: MlflowClient, run_ids: list[str], reason: str) -> None:
    """Mark child runs KILLED with `reason` as a tag, then soft-delete them (MLflow can restore them)."""
    for run_id in run_ids:
        client.set_tag(run_id, TAG_SUPERSEDED, reason)
        client.set_terminated(run_id, status="KILLED")
        client.delete_run(run_id)


def close_child(target: TrackingTarget, key: str, kind: str = "trial") -> None:
    """Mark a child run FINISHED if it is still RUNNING (its trial ended without closing it)."""
    client = MlflowClient(tracking_uri=target.uri)
    run_id = find_child(client, target.experiment_id, target.parent_run_id, {TAG_KIND: kind, TAG_TRIAL_ID: key})
    if run_id is not None and client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status="FINISHED")


def open_child(
    client: MlflowClient, experiment_id: str, parent_run_id: str, kind: str, key: str, run_name: str
) -> str:
    """The child run of the parent with tags ``kind`` and ``trial_id == key``, created when missing; set RUNNING."""
    tags = {TAG_KIND: kind, TAG_TRIAL_ID: key}
    run_id = find_child(client, experiment_id, parent_run_id, tags)
    if run_id is None:
        run = client.create_run(
            experiment_id, run_name=run_name, tags={**tags, MLFLOW_PARENT_RUN_ID: parent_run_id}
        )
        return run.info.run_id
    client.update_run(run_id, status="RUNNING")
    return run_id


# --------------------------------------------------------------------------------------------------
# the sweep's parent run (driver side)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackingTarget:
    """Where a trial logs: picklable, handed to every trial."""

    uri: str
    experiment_id: str
    parent_run_id: str


def start_sweep_run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    config: Mapping[str, Any],
    run_dir: Path,
    parent_run_id: str | None = None,
) -> str:
    """Open the sweep's parent run (a new one, or `parent_run_id` again on resume) and log the config."""
    if parent_run_id is not None:
        try:
            run = client.get_run(parent_run_id)
        except MlflowException:
            raise TrackingError(
                f"the sweep's MLflow run {parent_run_id} is not in {client.tracking_uri}; "
                "was the tracking store moved or deleted?"
            ) from None
        if run.info.lifecycle_stage == "deleted":
            raise TrackingError(f"the sweep's MLflow run {parent_run_id} is deleted; restore it in MLflow first")
        client.update_run(parent_run_id, status="RUNNING")
        return parent_run_id
    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={TAG_KIND: "sweep", TAG_SWEEP: name, TAG_RUN_DIR: str(run_dir.resolve())},
    )
    log_params(client, run.info.run_id, flatten(config))
    return run.info.run_id


# --------------------------------------------------------------------------------------------------
# one trial's child run (worker side)
# --------------------------------------------------------------------------------------------------


class TrialTracker:
    """The MLflow child run of one trial, opened (or found again) in the trial's own process.

    Args:
        target: the store, experiment and parent run of the sweep.
        trial_id: Ray's trial id; the child run is looked up by it.
        trial_name: the child run's display name.
        kind: ``trial`` for sweep trials, ``final`` for the final training run.
    """

    def __init__(self, target: TrackingTarget, trial_id: str, trial_name: str, kind: str = "trial") -> None:
        self.client = MlflowClient(tracking_uri=target.uri)
        self.run_id = open_child(self.client, target.experiment_id, target.parent_run_id, kind, trial_id, trial_name)
        self.logged_epochs = self._last_logged_epoch()

    def _last_logged_epoch(self, key: str = "val_reward") -> int:
        history = self.client.get_metric_history(self.run_id, key)
        return max((m.step for m in history), default=0)

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
            now = int(time.time() * 1000)
            batch = [Metric(k, v, now, epoch) for k, v in finite_metrics(metrics).items()]
            for start in range(0, len(batch), 1000):
                self.client.log_batch(self.run_id, metrics=batch[start : start + 1000])
            self.logged_epochs = epoch
        if checkpoint is not None:
            self.client.set_tag(self.run_id, TAG_CHECKPOINT, checkpoint)

    def log_text(self, text: str, artifact_file: str) -> None:
        """One text artifact (e.g. an HTML heatmap) at `artifact_file` inside the run's artifacts."""
        self.client.log_text(self.run_id, text, artifact_file)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        """A folder of artifacts."""
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        """Close the run (`FINISHED`, `FAILED` or `KILLED`)."""
        self.client.set_terminated(self.run_id, status=status)


def run_name_of(run: Any) -> str:
    """The display name of an MLflow run."""
    return run.data.tags.get(MLFLOW_RUN_NAME, run.info.run_name or run.info.run_id)
