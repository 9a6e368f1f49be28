"""Build, run and resume a sweep: a Ray Tune `Tuner` whose trials are short PPO runs.

Layout of a run dir (default ``./runs/<name>``; Ray's ``storage_path`` unless
``resources.storage_path`` names another place or a URI):

    sweep.json       the manifest: config, Ray experiment path, MLflow URI / experiment / parent run id
    tune/            Ray's experiment: searcher state, one folder per trial with its checkpoints
    mlflow.db        the embedded MLflow store (when ``tracking.uri`` is not set) ...
    mlartifacts/     ... with its artifacts beside it
    results.csv      the trial table, written at the end of the sweep
    plots/           BO convergence and weights plots

Everything a user can get wrong (config, run dir, tracking store, models, prompts) is checked before
Ray starts a trial, and raised as one `UserError`. The embedded default starts a private local Ray
(never a cluster someone else started on this machine) with token auth off unless
``RAY_AUTH_MODE`` is set; ``--address auto`` or ``ray://host:10001`` joins a cluster.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from dense_reward.config import ConfigError
from tune_jobs.config import SweepConfig, validate_sweep_config
from dense_reward.errors import UserError
from tune_jobs import tracking
from tune_jobs.trainable import FaultHook, TrialSetup, train_trial

if TYPE_CHECKING:
    from tune_jobs.results import SweepResults

MANIFEST = "sweep.json"
EXPERIMENT = "tune"
"""Ray's experiment name: trials live in ``<storage_path>/tune``."""
RUNS_ROOT = Path("runs")
METRIC = "val_reward"
MODE = "max"


@dataclass
class SweepManifest:
    """What a run dir holds: enough to resume the sweep, show its results or train its best trial."""

    name: str
    run_dir: str
    experiment_path: str
    """Ray's experiment folder or URI (``<storage_path>/tune``)."""
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    config: dict[str, Any]
    created: float = field(default_factory=time.time)

    @property
    def tracking_target(self) -> tracking.TrackingTarget:
        return tracking.TrackingTarget(self.tracking_uri, self.experiment_id, self.parent_run_id)

    def load_config(self) -> SweepConfig:
        return validate_sweep_config(self.config, source=str(Path(self.run_dir) / MANIFEST))

    def save(self) -> None:
        path = Path(self.run_dir) / MANIFEST
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)


def read_manifest(run_dir: Path) -> SweepManifest | None:
    """The manifest of `run_dir`, or None when it has none."""
    path = run_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        return SweepManifest(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as error:
        raise UserError(f"{path} is not a sweep manifest ({error}); was it edited by hand?") from None


def resolve_run(run: str | Path) -> SweepManifest:
    """A sweep by run dir path or by name (``./runs/<name>``); `UserError` when there is none."""
    candidates = [Path(run)]
    if not Path(run).is_absolute():
        candidates.append(RUNS_ROOT / str(run))
    for candidate in candidates:
        manifest = read_manifest(candidate)
        if manifest is not None:
            return manifest
    looked = " or ".join(str(c / MANIFEST) for c in candidates)
    raise UserError(f"unknown run {str(run)!r}: no {looked}; pass a run dir or the name of a sweep under ./runs")


def default_run_dir(config: SweepConfig) -> Path:
    """``resources.storage_path`` when it is a local path, else ``./runs/<name>``."""
    storage = config.resources.storage_path
    if storage and "://" not in storage:
        return Path(storage)
    return RUNS_ROOT / config.name


def storage_path_of(config: SweepConfig, run_dir: Path) -> str:
    """Ray's ``storage_path``: the run dir, or the URI in ``resources.storage_path`` (e.g. s3://...)."""
    storage = config.resources.storage_path
    if storage and "://" in storage:
        return storage
    return str(run_dir.resolve())


# --------------------------------------------------------------------------------------------------
# checks before any trial starts
# --------------------------------------------------------------------------------------------------


def preflight(config: SweepConfig) -> None:
    """Fail on bad models or prompts now, with one clear error, rather than in every trial."""
    from dense_reward.data import load_prompts
    from dense_reward.models import load_tokenizer, resolve_model_path
    from tune_jobs.search import make_searcher

    make_searcher(config)
    resolve_model_path(config.models.policy.path, "models.policy.path")
    resolve_model_path(config.models.reward.path, "models.reward.path")
    if config.models.reference is not None:
        resolve_model_path(config.models.reference.path, "models.reference.path")
    tokenizer = load_tokenizer(config.models.policy, "models.policy", padding_side="left")
    splits = load_prompts(config.data, tokenizer)
    if not splits.train:
        raise ConfigError(f"data.source: {config.data.source!r} gave no training prompts")
    if not splits.validation:
        raise ConfigError(
            f"data.source: {config.data.source!r} gave no validation prompts; raise data.validation_fraction"
        )


def init_ray(address: str | None) -> None:
    """Start a private local Ray (address None) or join a cluster; no-op when Ray is already up."""
    import ray

    if ray.is_initialized():
        return
    # A fresh local cluster would turn token auth on by itself; every process must agree on it.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # A private local Ray runs without its dashboard (about 0.7 GB of processes); trials are watched in MLflow.
    private = {"include_dashboard": False} if address is None else {}
    try:
        ray.init(address=address or "local", log_to_driver=False, configure_logging=False, **private)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise UserError(f"--address: cannot start or reach Ray at {address or 'local'!r}: {error}") from None


# --------------------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------------------


@dataclass
class SweepOutcome:
    """What `run_sweep` returns: the manifest and the final results table."""

    manifest: SweepManifest
    results: SweepResults
    retired_runs: list[str] = field(default_factory=list)
    """MLflow runs of trials lost in a driver crash, soft-deleted on resume (see `retire_lost_trials`)."""


def prepare(
    config: SweepConfig,
    run_dir: Path | None = None,
    resume: bool = False,
) -> tuple[SweepConfig, SweepManifest, bool]:
    """Check the run dir and the tracking store, open the parent run and write the manifest.

    Returns (config, manifest, restore) where `restore` says Ray has an experiment to restore. On
    resume the config stored in the manifest wins (a sweep cannot change its config halfway).
    """
    from ray.tune import Tuner

    run_dir = run_dir or default_run_dir(config)
    existing = read_manifest(run_dir)
    if resume and existing is None:
        raise UserError(f"--resume: {run_dir} holds no sweep ({MANIFEST} missing); start it without --resume")
    if not resume and existing is not None:
        raise UserError(
            f"{run_dir} already holds sweep {existing.name!r}; pass --resume to continue it, "
            "or another --name / --run-dir"
        )
    if existing is not None:
        config = existing.load_config()
    else:
        preflight(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    experiment_path = existing.experiment_path if existing else f"{storage_path_of(config, run_dir)}/{EXPERIMENT}"
    uri = existing.tracking_uri if existing else (config.tracking.uri or tracking.default_tracking_uri(run_dir))
    client = tracking.connect(uri)
    artifacts = None if config.tracking.uri else tracking.default_artifact_location(run_dir)
    if existing is not None:
        experiment_id = existing.experiment_id
    else:
        experiment_id = tracking.ensure_experiment(client, config.tracking.experiment, artifacts)
    parent = tracking.start_sweep_run(
        client, experiment_id, config.name, config.model_dump(), run_dir, existing.parent_run_id if existing else None
    )
    manifest = SweepManifest(
        name=config.name,
        run_dir=str(run_dir.resolve()),
        experiment_path=experiment_path,
        tracking_uri=uri,
        experiment_id=experiment_id,
        parent_run_id=parent,
        config=config.model_dump(mode="json"),
        created=existing.created if existing else time.time(),
    )
    manifest.save()
    return config, manifest, bool(resume and Tuner.can_restore(experiment_path))


def make_trainable(config: SweepConfig, manifest: SweepManifest) -> Any:
    """`train_trial` with the shared setup bound and the trial's resources attached."""
    from ray import tune

    setup = TrialSetup(
        config=manifest.config,
        tracking=manifest.tracking_target,
        fault=FaultHook.from_env(),
        env={k: os.environ[k] for k in ("DENSE_REWARD_CACHE",) if k in os.environ},
    )
    resources = {
        "cpu": config.resources.cpus_per_trial,
        "gpu": config.resources.gpus_per_trial,
        **config.resources.custom_per_trial,
    }
    return tune.with_resources(tune.with_parameters(train_trial, setup=setup), resources)


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def build_tuner(config: SweepConfig, manifest: SweepManifest, callbacks: list[Any], restore: bool) -> Any:
    """A new `Tuner` for the sweep, or the one restored from its experiment folder."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from tune_jobs.search import make_searcher

    trainable = make_trainable(config, manifest)
    if restore:
        return tune.Tuner.restore(manifest.experiment_path, trainable=trainable, resume_errored=True)
    scheduler = None
    if config.search.early_stopping:
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=config.ppo.epochs,
            grace_period=min(config.search.grace_period, config.ppo.epochs),
        )
    storage, name = manifest.experiment_path.rsplit("/", 1)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            search_alg=make_searcher(config),
            scheduler=scheduler,
            num_samples=config.search.trials,
            trial_dirname_creator=trial_dirname,
            # A trial's startup (torch, transformers, model files) costs more than a tiny trial's PPO.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=config.resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=config.resources.checkpoints_to_keep,
                checkpoint_score_attribute=METRIC,
                checkpoint_score_order=MODE,
            ),
            callbacks=callbacks,
            verbose=0,
        ),
    )


def run_sweep(
    config: SweepConfig,
    run_dir: Path | None = None,
    address: str | None = None,
    resume: bool = False,
    callbacks: list[Any] | None = None,
    on_ready: Callable[[SweepManifest], None] | None = None,
) -> SweepOutcome:
    """Run (or resume) a sweep to the end; log the sweep's artifacts; return its results.

    Args:
        config: the sweep config (on resume, the one stored in the run dir is used instead).
        run_dir: the run dir; None = `default_run_dir(config)`.
        address: None = a private local Ray; `auto` or `ray://host:port` = a cluster.
        resume: continue the sweep in `run_dir` (finished trials are kept, unfinished ones resume from
            their last checkpoint, the searcher continues where it stopped).
        callbacks: extra Ray Tune callbacks (e.g. the live trial table).
        on_ready: called with the manifest once the checks passed, before Ray starts.
    """
    from tune_jobs.results import finish_sweep

    config, manifest, restore = prepare(config, run_dir, resume)
    retired = retire_lost_trials(manifest) if resume else []
    if on_ready is not None:
        on_ready(manifest)
    init_ray(address)
    # Ray snapshots the experiment after every kept checkpoint (what makes --resume exact) and warns
    # that this is frequent; with short trials it is, by design.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    callbacks = [*(callbacks or []), TrialStatusCallback(manifest.tracking_target, config.ppo.epochs)]
    tuner = build_tuner(config, manifest, callbacks, restore)
    client = tracking.MlflowClient(tracking_uri=manifest.tracking_uri)
    try:
        tuner.fit()
    except KeyboardInterrupt:
        client.set_terminated(manifest.parent_run_id, status="KILLED")
        raise
    results = finish_sweep(manifest)
    return SweepOutcome(manifest=manifest, results=results, retired_runs=retired)


def retire_lost_trials(manifest: SweepManifest) -> list[str]:
    """Soft-delete the MLflow child runs of trials Ray never recorded (returns their run ids).

    A trial that started shortly before the driver died may be missing from Ray's last experiment
    snapshot. Ray does not know it on resume and the searcher proposes that point again as a new
    trial, so the old child run would be a duplicate. It is tagged, marked KILLED and soft-deleted
    (restorable in MLflow), never purged.
    """
    from tune_jobs.results import load_results

    try:
        known = {row.trial_id for row in load_results(manifest).trials}
    except UserError:
        known = set()
    client = tracking.MlflowClient(tracking_uri=manifest.tracking_uri)
    children = tracking.child_runs(client, manifest.experiment_id, manifest.parent_run_id)
    lost = [c.info.run_id for c in children if c.data.tags.get(tracking.TAG_TRIAL_ID) not in known]
    tracking.retire_children(
        client, lost, "its trial started before the driver died but was not in Ray's experiment state; rerun as a new trial"
    )
    return lost


class TrialStatusCallback(Callback):
    """Closes MLflow child runs the trial itself could not close.

    A trial that failed for good (no retries left) is marked FAILED; a trial the scheduler stopped
    (ASHA, which also stops a trial at its last epoch) never reaches its own `finish`, so it is marked
    FINISHED here, tagged `early_stopped` when it ended before `epochs`. The checkpoint tag is set here
    too, from the checkpoint Ray persisted, because a stopped trial never runs past its last report.
    """

    def __init__(self, target: tracking.TrackingTarget, epochs: int) -> None:
        self.target = target
        self.epochs = epochs

    def _child(self, trial: Any) -> tuple[Any, str | None]:
        client = tracking.MlflowClient(tracking_uri=self.target.uri)
        run_id = tracking.find_child(
            client,
            self.target.experiment_id,
            self.target.parent_run_id,
            {tracking.TAG_KIND: "trial", tracking.TAG_TRIAL_ID: trial.trial_id},
        )
        return client, run_id

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        client, run_id = self._child(trial)
        if run_id is not None:
            client.set_terminated(run_id, status="FAILED")

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        client, run_id = self._child(trial)
        if run_id is None or client.get_run(run_id).info.status != "RUNNING":
            return
        if int((trial.last_result or {}).get("epoch", 0)) < self.epochs:
            client.set_tag(run_id, "early_stopped", "true")
        client.set_terminated(run_id, status="FINISHED")

    def on_checkpoint(self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any) -> None:
        client, run_id = self._child(trial)
        if run_id is not None:
            client.set_tag(run_id, tracking.TAG_CHECKPOINT, checkpoint.path)


class ProgressTable(Callback):
    """Prints the trial table (weights, knobs, epoch, val_reward, status) as trials report and end.

    Reprints at most every `min_interval` seconds on results, and always when a trial ends.
    Picklable (Ray stores callbacks with the experiment), so a resumed sweep prints it too.
    """

    def __init__(self, sources: list[str], min_interval: float = 5.0) -> None:
        self.sources = list(sources)
        self.min_interval = min_interval
        self.last_print = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {"sources": self.sources, "min_interval": self.min_interval, "last_print": 0.0}

    def _print(self, trials: list[Any], force: bool) -> None:
        from rich.table import Table

        from tune_jobs.results import console

        now = time.monotonic()
        if not force and now - self.last_print < self.min_interval:
            return
        self.last_print = now
        knobs = sorted({k for t in trials for k in (t.config or {}) if k != "weights"})
        table = Table(title=f"trials ({sum(t.status == 'TERMINATED' for t in trials)}/{len(trials)} done)")
        for column in ["trial", "status", *[f"w_{s}" for s in self.sources], *knobs, "epoch", "val_reward"]:
            table.add_column(column, justify="left" if column in ("trial", "status") else "right")
        for trial in trials:
            config = trial.config or {}
            result = trial.last_result or {}
            value = result.get(METRIC)
            table.add_row(
                trial.trial_id,
                str(trial.status),
                *[f"{config.get('weights', {}).get(s, 0.0):.3f}" for s in self.sources],
                *[f"{config.get(k, float('nan')):.4g}" for k in knobs],
                str(result.get("epoch", 0)),
                "-" if value is None else f"{value:.4f}",
            )
        console().print(table)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any) -> None:
        self._print(trials, force=False)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._print(trials, force=True)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._print(trials, force=True)
