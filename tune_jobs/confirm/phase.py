"""The confirmation phase on Ray Tune and MLflow: a second experiment (``<storage>/confirm``) of fixed
trial configs, resumable like the search, with one MLflow run per re-run under the sweep's
``confirmation`` run."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.search import Searcher

from tune_jobs import tracking
from tune_jobs.config import METRIC, MODE, SweepConfig
from tune_jobs.confirm.outcome import Confirmation, summarise
from tune_jobs.confirm.plan import PLAN_FILE, ConfirmationPlan, make_plan
from tune_jobs.files import check_ray_state, write_atomically
from tune_jobs.results import SweepResults
from tune_jobs.rundir import SweepManifest

CONFIRM_EXPERIMENT = "confirm"
"""Ray's experiment name of the re-runs: they live in ``<storage_path>/confirm``, beside ``tune``."""

TrialKit = Callable[[tracking.TrackingTarget], tuple[Any, Callback]]
"""Given the MLflow target the re-runs log under: the Ray trainable and the callback that closes their runs."""


def experiment_path(manifest: SweepManifest) -> str:
    """Ray's experiment folder or URI of the re-runs: ``<storage_path>/confirm``."""
    return f"{manifest.experiment_path.rsplit('/', 1)[0]}/{CONFIRM_EXPERIMENT}"


def read_reruns(
    path: str, plan: ConfirmationPlan, epochs: int
) -> tuple[set[str], dict[tuple[str, int], float]]:
    """(ids of the re-runs Ray recorded, (label, seed) -> last val_reward of those that ran every `epochs`)."""
    import logging

    from ray.tune import ExperimentAnalysis, Tuner

    if not Tuner.can_restore(path):
        return set(), {}
    check_ray_state(path)
    # ExperimentAnalysis logs an error for every trial without a checkpoint; the table shows that already.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.CRITICAL)
    analysis = ExperimentAnalysis(path, default_metric=METRIC, default_mode=MODE)
    values: dict[tuple[str, int], float] = {}
    for trial in analysis.trials:
        rerun = plan.locate(trial.config or {})
        last = trial.last_result or {}
        value = last.get(METRIC)
        if rerun is None or int(last.get("epoch", 0) or 0) < epochs or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            values[rerun.label, rerun.seed] = float(value)
    return {trial.trial_id for trial in analysis.trials}, values


def load_confirmation(manifest: SweepManifest) -> Confirmation | None:
    """The confirmation outcome of a sweep as it stands (during, after or without its phase: None)."""
    path = Path(manifest.run_dir) / PLAN_FILE
    if not path.is_file():
        return None
    plan = ConfirmationPlan.load(path)
    epochs = int(manifest.config["ppo"]["epochs"])
    return summarise(plan, read_reruns(experiment_path(manifest), plan, epochs)[1])


class FixedListSearcher(Searcher):
    """Hands out a fixed list of trial configs, in order; its position is saved and restored as JSON.

    A trial Ray asks about again (a restored trial) gets the config it had. After a driver crash, Ray
    restores this position together with its last experiment snapshot, so a re-run started after that
    snapshot is handed out again (as a new trial).
    """

    CKPT_FILE_TMPL = "searcher-state-{}.json"

    def __init__(self, configs: Sequence[Mapping[str, Any]], metric: str = METRIC, mode: str = MODE) -> None:
        super().__init__(metric=metric, mode=mode)
        self.configs = [copy.deepcopy(dict(c)) for c in configs]
        self.assigned: dict[str, int] = {}
        """Trial id -> position in `configs`."""

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if trial_id not in self.assigned:
            if len(self.assigned) >= len(self.configs):
                return Searcher.FINISHED
            self.assigned[trial_id] = len(self.assigned)
        return copy.deepcopy(self.configs[self.assigned[trial_id]])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Nothing to learn: the list does not depend on results."""

    def get_state(self) -> dict[str, Any]:
        return {"configs": self.configs, "assigned": self.assigned}

    def set_state(self, state: dict[str, Any]) -> None:
        self.configs = [dict(c) for c in state["configs"]]
        self.assigned = {str(k): int(v) for k, v in state["assigned"].items()}

    def save(self, checkpoint_path: str) -> None:
        write_atomically(checkpoint_path, json.dumps(self.get_state()))

    def restore(self, checkpoint_path: str) -> None:
        self.set_state(json.loads(Path(checkpoint_path).read_text()))


class ConfirmationTags(Callback):
    """Tags each re-run's MLflow run with the phase, its point and its seed once the run exists (first result)."""

    def __init__(self, target: tracking.TrackingTarget, plan: ConfirmationPlan) -> None:
        self.target = target
        self.plan = plan
        self.tagged: set[str] = set()

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any
    ) -> None:
        if trial.trial_id in self.tagged:
            return
        rerun = self.plan.locate(trial.config or {})
        tags = {tracking.TAG_PHASE: tracking.CONFIRMATION}
        if rerun is not None:
            tags.update(candidate=rerun.label, seed=str(rerun.seed))
        if tracking.tag_trial(self.target, trial.trial_id, tags):
            self.tagged.add(trial.trial_id)


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def build_tuner(
    config: SweepConfig,
    path: str,
    plan: ConfirmationPlan,
    trainable: Any,
    callbacks: list[Any],
    restore: bool,
) -> Any:
    """The re-runs' `Tuner`: new, or restored from `path`. No early stopping: every re-run runs every epoch."""
    from ray import tune

    if restore:
        return tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    storage, name = path.rsplit("/", 1)
    configs = plan.trial_configs()
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            search_alg=FixedListSearcher(configs),
            num_samples=len(configs),
            max_concurrent_trials=config.search.max_concurrent,
            trial_dirname_creator=trial_dirname,
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


def run_confirmation(
    config: SweepConfig,
    manifest: SweepManifest,
    results: SweepResults,
    trial_kit: TrialKit,
    callbacks: list[Any],
) -> Confirmation:
    """Run (or resume) the confirmation phase to the end; log its outcome to its MLflow run; return it.

    Args:
        config: the sweep config.
        manifest: the sweep's manifest.
        results: the search's results (ranked once; on resume the saved plan is used).
        trial_kit: the trainable and status callback of trials that log under a given MLflow target.
        callbacks: extra Ray Tune callbacks (e.g. the live trial table).
    """
    plan_path = Path(manifest.run_dir) / PLAN_FILE
    if plan_path.is_file():
        plan = ConfirmationPlan.load(plan_path)
    else:
        plan = make_plan(config, results)
        plan.save(plan_path)
    target = tracking.open_confirmation_run(manifest.tracking_target, f"{manifest.name} confirmation")
    retired: list[str] = []
    if plan.candidates:
        path = experiment_path(manifest)
        known, _ = read_reruns(path, plan, config.ppo.epochs)
        retired = tracking.retire_unknown_trials(
            target,
            known,
            "its re-run started before the driver died but was not in Ray's experiment state; rerun as a new trial",
        )
        trainable, status_callback = trial_kit(target)
        callbacks = [*callbacks, status_callback, ConfirmationTags(target, plan)]
        tuner = build_tuner(config, path, plan, trainable, callbacks, restore=bool(known))
        try:
            tuner.fit()
        except KeyboardInterrupt:
            tracking.end_run(target.uri, target.parent_run_id, "KILLED")
            raise
    confirmation = load_confirmation(manifest)
    confirmation.retired_runs = retired
    metrics: dict[str, float | None] = {}
    for result in [confirmation.baseline, *confirmation.candidates]:
        name = "baseline" if result is confirmation.baseline else f"candidate_{result.label.lstrip('#')}"
        metrics[f"{name}_val_reward"] = result.mean.mean if result.mean else None
        if result.difference is not None:
            metrics[f"{name}_difference"] = result.difference.mean
            metrics[f"{name}_difference_lower"] = result.difference.lower
            metrics[f"{name}_difference_upper"] = result.difference.upper
    winner = confirmation.winner
    tags = {"summary": confirmation.summary(), tracking.TAG_PHASE: tracking.CONFIRMATION}
    if winner is not None:
        tags.update(confirmed_weights=json.dumps(winner.weights), confirmed_trial_id=str(winner.trial_id))
    tracking.log_sweep_outcome(
        target.uri,
        target.parent_run_id,
        files=[(plan_path, None)],
        summary=confirmation.to_dict(),
        metrics=metrics,
        tags=tags,
        status="FINISHED" if confirmation.complete else "FAILED",
    )
    return confirmation
