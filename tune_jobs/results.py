"""The results of a sweep: the trial table, the best observed trial and the recommended weights.

Read from Ray's experiment folder (the source of truth for trial status and checkpoints), so the
table is available while a sweep runs, after it ends, and after its driver crashed.

*Best observed* is the trial with the highest val_reward of any epoch: with val_reward as noisy as
the differences between weight vectors, that is often the luckiest trial. *Recommended* is the
answer of the search (`tune_jobs.search.recommend`): the GP posterior-mean maximiser among the
evaluated points, with an interval, fitted to every trial's last val_reward and its standard error.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dense_reward.errors import UserError
from tune_jobs.config import METRIC, MODE
from tune_jobs.files import check_ray_state
from tune_jobs.rundir import SweepManifest
from tune_jobs.search.space import WEIGHTS_KEY

if TYPE_CHECKING:
    from tune_jobs.search import Recommendation

SEM = f"{METRIC}_sem"
"""The standard error of `METRIC` over the validation prompts, reported beside it."""


@dataclass
class TrialRow:
    """One trial of the table."""

    trial_id: str
    status: str
    weights: dict[str, float]
    knobs: dict[str, float]
    epoch: int
    val_reward: float | None
    """The last reported val_reward."""
    best_val_reward: float | None
    """The best val_reward over the trial's epochs (the one its best checkpoint has)."""
    best_checkpoint: str | None
    num_failures: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    """The last reported value of every other metric."""
    index: int = 0
    """Creation order of the trial in the sweep (1 = first suggestion)."""
    val_reward_sem: float | None = None
    """Standard error of the last val_reward over the validation prompts."""
    best_val_reward_sem: float | None = None
    """Standard error of `best_val_reward` (same epoch)."""

    @property
    def trial_config(self) -> dict[str, Any]:
        """The trial's config as the searcher proposed it: weights plus knobs."""
        return {WEIGHTS_KEY: dict(self.weights), **self.knobs}


@dataclass
class Recommended:
    """The recommended weights (and knobs) of a sweep, with the GP's interval for their val_reward."""

    trial_id: str
    """The evaluated trial at the recommended point (its checkpoint is what `final` trains on)."""
    config: dict[str, Any]
    mean: float
    """The GP posterior mean of val_reward there (the observed value when `fallback`)."""
    lower: float | None
    """Lower end of the 95% interval; None when no standard error is known."""
    upper: float | None
    fallback: bool = False
    """True when no GP was used and the point is the best observed trial instead."""
    reason: str | None = None
    """Why the fallback was taken."""

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.config[WEIGHTS_KEY])


@dataclass
class SweepResults:
    """The trial table of a sweep, its best observed trial and its recommended point."""

    name: str
    run_dir: str
    tracking_uri: str
    parent_run_id: str
    sources: list[str]
    trials: list[TrialRow]
    recommended: Recommended | None = None

    @property
    def best(self) -> TrialRow | None:
        """The best observed trial: highest val_reward over all trials and epochs."""
        scored = [row for row in self.trials if row.best_val_reward is not None]
        return max(scored, key=lambda row: row.best_val_reward) if scored else None

    @property
    def recommended_trial(self) -> TrialRow | None:
        """The trial row of the recommended point."""
        if self.recommended is None:
            return None
        return next((row for row in self.trials if row.trial_id == self.recommended.trial_id), None)

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "name": self.name,
            "run_dir": self.run_dir,
            "tracking_uri": self.tracking_uri,
            "parent_run_id": self.parent_run_id,
            "trials": [asdict(row) for row in self.trials],
            "best_observed": asdict(best) if best else None,
            "recommended": asdict(self.recommended) if self.recommended else None,
        }


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value)):
        return float(value)
    return None


def _trial_index(experiment_tag: str) -> int:
    """Ray's experiment tag starts with the trial's counter: ``3_weights=...``."""
    head = str(experiment_tag).split("_", 1)[0]
    return int(head) if head.isdigit() else 0


def _best_epoch(frame: Any) -> tuple[float | None, float | None]:
    """(best val_reward over a trial's epochs, its standard error) from the trial's result frame."""
    if frame is None or METRIC not in getattr(frame, "columns", []):
        return None, None
    values = frame[METRIC].tolist()
    sems = frame[SEM].tolist() if SEM in frame.columns else [None] * len(values)
    scored = [
        (v, _finite(s)) for v, s in zip((_finite(x) for x in values), sems, strict=True) if v is not None
    ]
    return max(scored, key=lambda pair: pair[0]) if scored else (None, None)


def load_results(manifest: SweepManifest) -> SweepResults:
    """The trial table of a sweep from its Ray experiment folder; `UserError` when there is none yet,
    `RayStateError` when its newest state file is cut short."""
    from ray.tune import ExperimentAnalysis

    sources = manifest.sources
    # ExperimentAnalysis logs an error for every trial without a checkpoint; the table shows that already.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.CRITICAL)
    check_ray_state(manifest.experiment_path)
    try:
        analysis = ExperimentAnalysis(manifest.experiment_path, default_metric=METRIC, default_mode=MODE)
    except (ValueError, FileNotFoundError) as error:
        raise UserError(
            f"sweep {manifest.name!r} has no trial state at {manifest.experiment_path} yet "
            f"({str(error).splitlines()[0]})"
        ) from None
    frames = analysis.trial_dataframes
    rows = []
    for trial in analysis.trials:
        config = trial.config or {}
        last = trial.last_result or {}
        best_value, best_sem = _best_epoch(frames.get(trial.trial_id))
        checkpoint = analysis.get_best_checkpoint(trial) if last else None
        metrics = {
            key: float(value)
            for key, value in last.items()
            if key not in (METRIC, SEM, "epoch")
            and _finite(value) is not None
            and not key.startswith("config/")
        }
        rows.append(
            TrialRow(
                trial_id=trial.trial_id,
                status=str(trial.status),
                weights={s: float(config.get(WEIGHTS_KEY, {}).get(s, 0.0)) for s in sources},
                knobs={k: float(v) for k, v in config.items() if k != WEIGHTS_KEY},
                epoch=int(last.get("epoch", 0) or 0),
                val_reward=_finite(last.get(METRIC)),
                best_val_reward=best_value,
                best_checkpoint=checkpoint.path if checkpoint is not None else None,
                num_failures=int(trial.run_metadata.num_failures),
                metrics=metrics,
                index=_trial_index(trial.experiment_tag),
                val_reward_sem=_finite(last.get(SEM)),
                best_val_reward_sem=best_sem,
            )
        )
    rows.sort(key=lambda row: row.index)
    return SweepResults(
        name=manifest.name,
        run_dir=manifest.run_dir,
        tracking_uri=manifest.tracking_uri,
        parent_run_id=manifest.parent_run_id,
        sources=sources,
        trials=rows,
        recommended=recommend_point(manifest, rows),
    )


def recommend_point(manifest: SweepManifest, rows: list[TrialRow]) -> Recommended | None:
    """The sweep's recommended point among its trials that ran every epoch; None when none did.

    Each trial enters with its *last* val_reward and standard error, the value the searcher was told.
    Trials stopped early (ASHA) are left out: a value after fewer epochs is not the same objective.
    """
    from tune_jobs.search import SearchSpace, recommend

    config = manifest.load_config()
    done = [row for row in rows if row.val_reward is not None and row.epoch >= config.ppo.epochs]
    if not done:
        return None
    space = SearchSpace.from_config(config)
    answer: Recommendation = recommend(
        space,
        # Only what the space knows: a confirmation re-run also carries its seed.
        [{WEIGHTS_KEY: row.weights, **{k: row.knobs[k] for k in space.knob_names}} for row in done],
        [row.val_reward for row in done],
        [row.val_reward_sem for row in done],
    )
    return Recommended(
        trial_id=done[answer.index].trial_id,
        config=dict(answer.config),
        mean=float(answer.mean),
        lower=answer.lower,
        upper=answer.upper,
        fallback=answer.method != "gp",
        reason=answer.note,
    )


def write_csv(results: SweepResults, path: Path) -> Path:
    """One line per trial: id, status, epoch, val_reward (+ sem), best (+ sem), the last gold_reward (empty
    without a gold scorer), weights, knobs, checkpoint, role."""
    knob_names = sorted({k for row in results.trials for k in row.knobs})
    header = [
        "trial_id",
        "status",
        "epoch",
        "val_reward",
        "val_reward_sem",
        "best_val_reward",
        "best_val_reward_sem",
        "gold_reward",
    ]
    header += ["num_failures", *[f"w_{s}" for s in results.sources], *knob_names, "best_checkpoint", "role"]
    best = results.best
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in results.trials:
            writer.writerow(
                [row.trial_id, row.status, row.epoch, row.val_reward, row.val_reward_sem]
                + [row.best_val_reward, row.best_val_reward_sem, row.metrics.get("gold_reward"), row.num_failures]
                + [row.weights[s] for s in results.sources]
                + [row.knobs.get(k) for k in knob_names]
                + [row.best_checkpoint, role_of(row, results, best)]
            )
    return path


def role_of(row: TrialRow, results: SweepResults, best: TrialRow | None) -> str:
    """``recommended``, ``best observed``, both joined by ``+``, or empty."""
    roles = []
    if results.recommended is not None and row.trial_id == results.recommended.trial_id:
        roles.append("recommended")
    if best is not None and row.trial_id == best.trial_id:
        roles.append("best observed")
    return "+".join(roles)
