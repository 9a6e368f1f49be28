"""The MLflow store of a sweep: which URI, reaching it, its experiment, and the low-level run helpers.

A remote store is probed with one plain HTTP request first, so that a dead server is one short line
naming the URI; every failure to reach or use a store is a `TrackingError`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.entities import Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from dense_reward.errors import UserError
from tune_jobs.environment import environment

# MLflow announces at INFO that it creates and migrates a new sqlite store's tables; it is routine.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)

TAG_KIND = "dense_reward.kind"
"""`sweep` on the parent run, `trial` on a trial's child run, `final` on a final training run."""
TAG_TRIAL_ID = "trial_id"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
MAX_PARAM_CHARS = 6000
"""MLflow rejects longer param values."""
BATCH_LIMIT = 100
"""Most params (and tags) one `log_batch` call takes."""
REASON_CHARS = 160
"""Longest cause quoted in a `TrackingError` (a driver's own message can run to several hundred)."""
PROBE_SECONDS = 5.0


class TrackingError(UserError):
    """The MLflow tracking store cannot be reached or used; the message names the URI."""


def default_tracking_uri(run_dir: str | Path) -> str:
    """The embedded store of a run dir: ``sqlite:///<run dir>/mlflow.db``."""
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def default_artifact_location(run_dir: str | Path) -> str:
    """Where artifacts of a sqlite store live: ``<run dir>/mlartifacts`` (beside the database)."""
    return (Path(run_dir).resolve() / "mlartifacts").as_uri()


def tracking_uri_for(
    configured: str | None, run_dir: str | Path, environ: Mapping[str, str] | None = None
) -> tuple[str, bool]:
    """The store a new sweep logs to, and whether it is the run dir's embedded one.

    ``tracking.uri`` wins; else ``$MLFLOW_TRACKING_URI`` (as MLflow itself reads it); else the embedded
    ``sqlite:///<run dir>/mlflow.db``.
    """
    environ = os.environ if environ is None else environ
    uri = configured or environ.get(TRACKING_URI_ENV) or None
    return (uri, False) if uri else (default_tracking_uri(run_dir), True)


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


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."


@contextmanager
def _quick_http() -> Iterator[None]:
    """Fail fast on an unreachable server: no retries, a short timeout (restored afterwards)."""
    with environment({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}):
        yield


def _probe_server(uri: str) -> None:
    """One plain HTTP request to the server, so that a dead one is one short line, not urllib3's retry story.

    Any HTTP answer (even 401 or 404) means something listens there; the client check follows.
    """
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=PROBE_SECONDS):
            return
    except urllib.error.HTTPError:
        return
    except urllib.error.URLError as error:
        reason = error.reason
    except OSError as error:
        reason = error
    if isinstance(reason, ConnectionRefusedError):
        text = "connection refused"
    elif isinstance(reason, socket.gaierror):
        text = f"unknown host {urlparse(uri).hostname!r}"
    elif isinstance(reason, TimeoutError | socket.timeout):
        text = f"no answer within {PROBE_SECONDS:.0f} s"
    else:
        text = _short(reason) if isinstance(reason, BaseException) else str(reason)
    raise TrackingError(f"tracking.uri: cannot reach the MLflow store {uri!r}: {text}")


def check_uri(uri: str) -> None:
    """Refuse a URI no MLflow store can have, before anything is created (`TrackingError` naming it)."""
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///"):
            raise TrackingError(
                f"tracking.uri: a sqlite URI looks like sqlite:////abs/path/mlflow.db, got {uri!r}"
            )
    elif scheme not in ("http", "https", "postgresql", "mysql", "mssql", "databricks"):
        raise TrackingError(
            f"tracking.uri: unsupported tracking URI {uri!r}; use sqlite:///<file>, http(s)://<server> or a database URI"
        )


def connect(uri: str) -> MlflowClient:
    """A client on `uri`, checked to answer; raises `TrackingError` (one short line naming the URI) otherwise.

    A ``sqlite:///`` store is created (with its folder) when missing.
    """
    check_uri(uri)
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        try:
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TrackingError(f"tracking.uri: cannot create the folder of {uri!r}: {error}") from None
    elif scheme in ("http", "https"):
        _probe_server(uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        with _quick_http():
            client.search_experiments(max_results=1)
    except Exception as error:  # noqa: BLE001 - any failure here means the store is unusable
        raise TrackingError(f"tracking.uri: cannot reach the MLflow store {uri!r}: {_short(error)}") from None
    return client


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of experiment `name`, created (with `artifact_location`) when missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise TrackingError(
                f"tracking.experiment: experiment {name!r} is deleted; restore it or pick another name"
            )
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


def find_child(
    client: MlflowClient, experiment_id: str, parent_run_id: str, tags: Mapping[str, str]
) -> str | None:
    """The oldest child of `parent_run_id` carrying every tag in `tags`, or None."""
    conditions = [f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'"]
    conditions += [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
    runs = client.search_runs(
        [experiment_id],
        filter_string=" and ".join(conditions),
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def child_runs(
    client: MlflowClient, experiment_id: str, parent_run_id: str, kind: str = "trial"
) -> list[Any]:
    """Every child run of the parent with ``dense_reward.kind == kind``, oldest first."""
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}' and tags.`{TAG_KIND}` = '{kind}'",
        order_by=["attributes.start_time ASC"],
        max_results=5000,
    )


def open_child(
    client: MlflowClient, experiment_id: str, parent_run_id: str, kind: str, key: str, run_name: str
) -> str:
    """The child run of the parent with tags ``kind`` and ``trial_id == key``, created when missing; set RUNNING."""
    tags = {TAG_KIND: kind, TAG_TRIAL_ID: key}
    run_id = find_child(client, experiment_id, parent_run_id, tags)
    if run_id is None:
        return new_child(client, experiment_id, parent_run_id, kind, key, run_name)
    client.update_run(run_id, status="RUNNING")
    return run_id


def new_child(
    client: MlflowClient, experiment_id: str, parent_run_id: str, kind: str, key: str, run_name: str
) -> str:
    """A new child run of the parent, tagged ``kind`` and ``trial_id == key``."""
    tags = {TAG_KIND: kind, TAG_TRIAL_ID: key, MLFLOW_PARENT_RUN_ID: parent_run_id}
    return client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id


@dataclass(frozen=True)
class TrackingTarget:
    """Where a trial logs: picklable, handed to every trial."""

    uri: str
    experiment_id: str
    parent_run_id: str
