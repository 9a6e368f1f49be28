"""Every MLflow call of the service, in two modules: :mod:`.store` (which store, reaching it, its
experiment, low-level run helpers) and :mod:`.runs` (the sweep's parent run, trials' child runs, final
training runs and their model versions). Callers use the names below as ``tracking.<name>``.

MLflow does not let a client choose run ids, so a trial's child run is found by its tags
(``trial_id`` under the parent) before one is created: a retried trial or a resumed sweep keeps
logging into the same child, never a duplicate. Epochs already in a child's history are not logged
again, so a trial resumed from an older checkpoint leaves one value per epoch.

Everything goes through an explicit :class:`mlflow.MlflowClient`; no global "active run" state is
used, so several trials in one process cannot mix their runs.
"""

from tune_jobs.tracking.runs import (
    CONFIG_ARTIFACT,
    CONFIRMATION,
    KEY_PARAMS,
    TAG_CHECKPOINT,
    TAG_EARLY_STOPPED,
    TAG_NODE,
    TAG_PHASE,
    TAG_RAY_NODE_ID,
    TAG_REGISTERED_MODEL,
    TAG_RUN_DIR,
    TAG_SUPERSEDED,
    TAG_SWEEP,
    TrialTracker,
    close_child,
    end_run,
    fail_trial,
    key_params,
    log_sweep_outcome,
    open_confirmation_run,
    retire_unknown_trials,
    start_sweep_run,
    tag_checkpoint,
    tag_trial,
)
from tune_jobs.tracking.store import (
    MAX_PARAM_CHARS,
    TAG_KIND,
    TAG_TRIAL_ID,
    TRACKING_URI_ENV,
    TrackingError,
    TrackingTarget,
    check_uri,
    child_runs,
    connect,
    default_artifact_location,
    default_tracking_uri,
    ensure_experiment,
    finite_metrics,
    flatten,
    log_params,
    log_tags,
    tracking_uri_for,
)

__all__ = [
    "CONFIG_ARTIFACT",
    "CONFIRMATION",
    "KEY_PARAMS",
    "MAX_PARAM_CHARS",
    "TAG_CHECKPOINT",
    "TAG_EARLY_STOPPED",
    "TAG_KIND",
    "TAG_NODE",
    "TAG_PHASE",
    "TAG_RAY_NODE_ID",
    "TAG_REGISTERED_MODEL",
    "TAG_RUN_DIR",
    "TAG_SUPERSEDED",
    "TAG_SWEEP",
    "TAG_TRIAL_ID",
    "TRACKING_URI_ENV",
    "TrackingError",
    "TrackingTarget",
    "TrialTracker",
    "check_uri",
    "child_runs",
    "close_child",
    "connect",
    "default_artifact_location",
    "default_tracking_uri",
    "end_run",
    "ensure_experiment",
    "fail_trial",
    "finite_metrics",
    "flatten",
    "key_params",
    "log_params",
    "log_sweep_outcome",
    "log_tags",
    "open_confirmation_run",
    "retire_unknown_trials",
    "start_sweep_run",
    "tag_checkpoint",
    "tag_trial",
    "tracking_uri_for",
]
