"""Build, run and resume a sweep: a Ray Tune `Tuner` whose trials are short PPO runs.

The sweep orchestrates the other modules: the run dir and its manifest (:mod:`tune_jobs.rundir`), the
MLflow runs (:mod:`tune_jobs.tracking`), the trial (:mod:`tune_jobs.trainable`), and at the end the
results table (:mod:`tune_jobs.results`) and plots (:mod:`tune_jobs.plots`).

Everything a user can get wrong (config, run dir, tracking store, models, prompts) is checked before
Ray starts a trial, and raised as one `UserError`; a remote tracking store is checked before any model
loads, and a failed start leaves no run dir behind. The default is a private local Ray
(:mod:`tune_jobs.local_ray`); ``--address auto`` or ``ray://host:10001`` joins a cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune import Callback

from dense_reward.config import ConfigError
from dense_reward.errors import UserError
from tune_jobs import tracking
from tune_jobs.config import METRIC, MODE, SweepConfig
from tune_jobs.confirm import Confirmation, check_config, run_confirmation
from tune_jobs.confirm import experiment_path as confirm_experiment_path
from tune_jobs.files import RayStateError, check_ray_state
from tune_jobs.local_ray import check_fits_private_ray, init_ray
from tune_jobs.plots import convergence_plot, weights_plot
from tune_jobs.results import SweepResults, load_results, write_csv
from tune_jobs.rundir import (
    MANIFEST,
    PLOTS,
    RESULTS_CSV,
    SweepManifest,
    default_run_dir,
    experiment_path_of,
    read_manifest,
)
from tune_jobs.trainable import FaultHook, TrialSetup, train_trial

# --------------------------------------------------------------------------------------------------
# checks before any trial starts
# --------------------------------------------------------------------------------------------------


def preflight(config: SweepConfig) -> None:
    """Fail on bad models or prompts now, with one clear error, rather than in every trial."""
    from dense_reward.data import load_prompts
    from dense_reward.models import check_reward_length, load_tokenizer, resolve_model_paths
    from tune_jobs.search import make_searcher

    make_searcher(config)
    check_config(config)
    resolve_model_paths(config.models)
    check_reward_length(config.models.reward)
    tokenizer = load_tokenizer(config.models.policy, "models.policy", padding_side="left")
    splits = load_prompts(config.data, tokenizer)
    if not splits.train:
        raise ConfigError(f"data.source: {config.data.source!r} gave no training prompts")
    if not splits.validation:
        raise ConfigError(
            f"data.source: {config.data.source!r} gave no validation prompts; raise data.validation_fraction"
        )


# --------------------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------------------


@dataclass
class SweepOutcome:
    """What `run_sweep` returns: the manifest, the final results table and the confirmation outcome."""

    manifest: SweepManifest
    results: SweepResults
    retired_runs: list[str] = field(default_factory=list)
    """MLflow runs of trials lost in a driver crash, soft-deleted on resume (see `retire_lost_trials`)."""
    confirmation: Confirmation | None = None
    """The confirmation phase (`search.confirm_top_k` > 0), else None."""


def prepare(
    config: SweepConfig,
    run_dir: Path | None = None,
    resume: bool = False,
    address: str | None = None,
) -> tuple[SweepConfig, SweepManifest, bool]:
    """Check the run dir and the tracking store, open the parent run and write the manifest.

    Returns (config, manifest, restore) where `restore` says Ray has an experiment to restore. On
    resume the config stored in the manifest wins (a sweep cannot change its config halfway). The
    tracking store of a new sweep is ``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else the run
    dir's embedded sqlite store. A remote store is checked before the models load, and with a private
    local Ray (`address` None) that a trial fits on this machine; when anything fails, a run dir this
    call created is removed again.
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
        check_resumable(existing)
        config = existing.load_config()
        uri, embedded = existing.tracking_uri, existing.tracking_uri == tracking.default_tracking_uri(run_dir)
    else:
        uri, embedded = tracking.tracking_uri_for(config.tracking.uri, run_dir)
    if address is None:
        check_fits_private_ray(config)
    tracking.check_uri(uri)
    if not embedded:
        tracking.connect(uri)
    if existing is None:
        preflight(config)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        client = tracking.connect(uri)
        if existing is not None:
            experiment_id = existing.experiment_id
        else:
            artifacts = tracking.default_artifact_location(run_dir) if embedded else None
            experiment_id = tracking.ensure_experiment(client, config.tracking.experiment, artifacts)
            tracking.share_runs_view(client, experiment_id, config.shaping.sources, list(config.search.knobs))
        parent = tracking.start_sweep_run(
            client,
            experiment_id,
            config.name,
            config.model_dump(mode="json"),
            run_dir,
            existing.parent_run_id if existing else None,
        )
        manifest = SweepManifest(
            name=config.name,
            run_dir=str(run_dir.resolve()),
            experiment_path=existing.experiment_path if existing else experiment_path_of(config, run_dir),
            tracking_uri=uri,
            experiment_id=experiment_id,
            parent_run_id=parent,
            config=config.model_dump(mode="json"),
            created=existing.created if existing else time.time(),
        )
        manifest.save()
    except BaseException:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return config, manifest, bool(resume and Tuner.can_restore(manifest.experiment_path))


def check_resumable(manifest: SweepManifest) -> None:
    """Refuse, before anything is touched, to resume a sweep whose Ray state files are not whole.

    Ray would log the damage and start the experiment afresh without its trials, and every trial it no
    longer knew would be retired from MLflow as lost.
    """
    for path in (manifest.experiment_path, confirm_experiment_path(manifest)):
        try:
            check_ray_state(path)
        except RayStateError as error:
            raise RayStateError(
                f"--resume: sweep {manifest.name!r} cannot be resumed: {error}. Nothing was changed: its "
                "MLflow runs and trial checkpoints stay as they are; run the sweep again under a new --name "
                "or --run-dir"
            ) from None


def make_trainable(
    config: SweepConfig, manifest: SweepManifest, target: tracking.TrackingTarget | None = None
) -> Any:
    """`train_trial` with the shared setup bound and the trial's resources attached.

    Trials log under `target` (default: the sweep's parent run; the confirmation run for re-runs).
    """
    from ray import tune

    setup = TrialSetup(
        config=manifest.config,
        tracking=target or manifest.tracking_target,
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

    With ``search.confirm_top_k`` > 0, the confirmation phase (:mod:`tune_jobs.confirm`) follows the
    search, and resumes with it.
    """
    config, manifest, restore = prepare(config, run_dir, resume, address)
    retired = retire_lost_trials(manifest) if resume else []
    if on_ready is not None:
        on_ready(manifest)
    init_ray(address)
    # Ray snapshots the experiment after every kept checkpoint and warns that this is frequent;
    # with short trials it is, by design.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    callbacks = list(callbacks or [])
    status = TrialStatusCallback(manifest.tracking_target, config.ppo.epochs)
    tuner = build_tuner(config, manifest, [*callbacks, status], restore)
    try:
        tuner.fit()
    except KeyboardInterrupt:
        tracking.end_run(manifest.tracking_uri, manifest.parent_run_id, "KILLED")
        raise
    results = finish_sweep(manifest)
    confirmation = None
    if config.search.confirm_top_k:
        confirmation = run_confirmation(
            config,
            manifest,
            results,
            lambda target: (
                make_trainable(config, manifest, target),
                TrialStatusCallback(target, config.ppo.epochs),
            ),
            callbacks,
        )
    return SweepOutcome(manifest=manifest, results=results, retired_runs=retired, confirmation=confirmation)


def finish_sweep(manifest: SweepManifest) -> SweepResults:
    """After `Tuner.fit`: write the results CSV and the plots, log them to the parent run, close it."""
    results = load_results(manifest)
    run_dir = Path(manifest.run_dir)
    plots = run_dir / PLOTS
    plots.mkdir(exist_ok=True)
    rows = results.trials
    best_values = [row.best_val_reward for row in rows]
    csv_path = write_csv(results, run_dir / RESULTS_CSV)
    convergence = convergence_plot(
        best_values, [row.best_val_reward_sem for row in rows], results.name, plots / "bo_convergence.png"
    )
    weights = weights_plot(
        np.array([[row.weights[s] for s in results.sources] for row in rows]).reshape(
            len(rows), len(results.sources)
        ),
        best_values,
        [f"#{row.index}" for row in rows],
        results.sources,
        results.name,
        plots / "weights.png",
    )
    metrics: dict[str, float | None] = {}
    tags: dict[str, str] = {}
    best, recommended = results.best, results.recommended
    if best is not None:
        metrics["best_val_reward"] = best.best_val_reward
        tags.update(best_trial_id=best.trial_id, best_weights=json.dumps(best.weights))
        if best.best_checkpoint:
            tags["best_checkpoint"] = best.best_checkpoint
    if recommended is not None:
        metrics.update(
            recommended_val_reward=recommended.mean,
            recommended_val_reward_lower=recommended.lower,
            recommended_val_reward_upper=recommended.upper,
        )
        tags.update(
            recommended_trial_id=recommended.trial_id, recommended_weights=json.dumps(recommended.weights)
        )
    finished = all(row.status == "TERMINATED" for row in rows)
    tracking.log_sweep_outcome(
        manifest.tracking_uri,
        manifest.parent_run_id,
        files=[(csv_path, None), (convergence, PLOTS), (weights, PLOTS)],
        summary=results.to_dict(),
        metrics=metrics,
        tags=tags,
        status="FINISHED" if finished else "FAILED",
    )
    return results


def retire_lost_trials(manifest: SweepManifest) -> list[str]:
    """Soft-delete the MLflow child runs of trials Ray never recorded (returns their run ids).

    A trial that started shortly before the driver died may be missing from Ray's last experiment
    snapshot. Ray does not know it on resume and the searcher proposes that point again as a new
    trial, so the old child run would be a duplicate. It is tagged, marked KILLED and soft-deleted
    (restorable in MLflow), never purged.
    """
    try:
        known = {row.trial_id for row in load_results(manifest).trials}
    except RayStateError:
        raise
    except UserError:  # no snapshot yet: no trial was recorded
        known = set()
    return tracking.retire_unknown_trials(
        manifest.tracking_target,
        known,
        "its trial started before the driver died but was not in Ray's experiment state; rerun as a new trial",
    )


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

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        tracking.fail_trial(self.target, trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        early = int((trial.last_result or {}).get("epoch", 0)) < self.epochs
        tracking.close_child(self.target, trial.trial_id, early_stopped=early)

    def on_checkpoint(
        self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        tracking.tag_checkpoint(self.target, trial.trial_id, checkpoint.path)
