"""The outcome of a confirmation phase: mean val_reward per point with a t-interval, and the paired
difference of each candidate to the baseline (same seeds) with its t-interval. Pure: no Ray, no MLflow."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from tune_jobs.confirm.plan import BASELINE_LABEL, Candidate, ConfirmationPlan
from tune_jobs.search.space import WEIGHTS_KEY

LEVEL = 0.95
"""Confidence level of every interval of the phase."""


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided Student-t confidence interval (none below 2 values)."""

    mean: float
    lower: float | None
    upper: float | None
    n: int


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean of ``values`` ``(n,)`` and ``mean ± t_{(1+level)/2, n-1} · s / sqrt(n)``, s the sample sd.

    The interval for a mean of a normal sample with unknown variance
    (https://en.wikipedia.org/wiki/Student%27s_t-distribution#Confidence_intervals); ``lower`` and
    ``upper`` are None for fewer than 2 values. Raises ``ValueError`` on no values or a non-finite one.
    """
    x = np.asarray(values, dtype=np.float64)  # (n,)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"t_interval: need finite values, got {list(values)}")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, None, None, 1)
    half = float(stats.t.ppf(0.5 + level / 2, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return Interval(mean, mean - half, mean + half, int(x.size))


@dataclass
class CandidateResult:
    """One point's re-runs: its val_reward per seed, their mean with a CI and the paired difference to the baseline."""

    label: str
    config: dict[str, Any]
    trial_id: str | None
    posterior_mean: float | None
    values: dict[int, float]
    """Seed -> val_reward after the last epoch, for the re-runs that finished."""
    mean: Interval | None
    """Mean val_reward over the seeds with its 95% CI; None before any re-run finished."""
    difference: Interval | None = None
    """``candidate - baseline`` paired by seed, over the seeds both finished, with its 95% CI; None for the baseline."""

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.config[WEIGHTS_KEY])

    @property
    def knobs(self) -> dict[str, float]:
        return {k: v for k, v in self.config.items() if k != WEIGHTS_KEY}

    @property
    def beats_baseline(self) -> bool:
        """The whole CI of the paired difference lies above 0."""
        d = self.difference
        return d is not None and d.lower is not None and d.lower > 0

    @property
    def verdict(self) -> str:
        """``beats the baseline``, ``worse than the baseline``, ``within noise`` or why there is no verdict."""
        d = self.difference
        if d is None:
            return "no paired seed yet"
        if d.lower is None or d.upper is None:
            return "no interval (fewer than 2 paired seeds)"
        if d.lower > 0:
            return "beats the baseline"
        if d.upper < 0:
            return "worse than the baseline"
        return "within noise"


@dataclass
class Confirmation:
    """The outcome of the confirmation phase."""

    seeds: list[int]
    baseline: CandidateResult
    candidates: list[CandidateResult]
    planned: int
    """Re-runs in the plan (points x seeds)."""
    finished: int
    """Re-runs that ran every epoch."""
    note: str | None = None
    retired_runs: list[str] = field(default_factory=list)
    """MLflow runs of re-runs lost in a driver crash, soft-deleted on resume."""

    @property
    def complete(self) -> bool:
        return self.finished == self.planned

    @property
    def winner(self) -> CandidateResult | None:
        """The candidate with the largest mean paired difference among those that beat the baseline, or None."""
        beating = [c for c in self.candidates if c.beats_baseline]
        return max(beating, key=lambda c: c.difference.mean) if beating else None

    def summary(self) -> str:
        """One plain sentence: which candidate beats the baseline beyond noise, or that none does."""
        head = "" if self.complete else f"(only {self.finished} of {self.planned} re-runs finished) "
        if not self.candidates:
            return head + f"nothing to confirm: {self.note or 'no candidate'}"
        winner = self.winner
        if winner is not None:
            d = winner.difference
            return head + (
                f"candidate {winner.label} beats the {BASELINE_LABEL} baseline beyond noise: paired difference "
                f"{d.mean:+.4f} [{d.lower:+.4f}, {d.upper:+.4f}] ({LEVEL:.0%} CI over {d.n} seeds)"
            )
        if all(c.difference is None or c.difference.lower is None for c in self.candidates):
            return head + (
                f"no candidate beats the {BASELINE_LABEL} baseline beyond noise: with fewer than 2 paired seeds "
                "there is no interval" + (" (raise search.confirm_seeds)" if self.complete else "")
            )
        return head + (
            f"no candidate beats the {BASELINE_LABEL} baseline beyond noise: every {LEVEL:.0%} CI of the paired "
            "difference includes 0 or lies below it"
        )

    def to_dict(self) -> dict[str, Any]:
        winner = self.winner
        return {
            **asdict(self),
            "complete": self.complete,
            "winner": winner.label if winner else None,
            "summary": self.summary(),
        }


def summarise(plan: ConfirmationPlan, values: Mapping[tuple[str, int], float]) -> Confirmation:
    """The outcome from the finished re-runs' val_reward, keyed by (point label, seed)."""

    def result(point: Candidate, baseline: dict[int, float] | None) -> CandidateResult:
        mine = {
            seed: float(values[point.label, seed]) for seed in plan.seeds if (point.label, seed) in values
        }
        paired = [
            mine[s] - baseline[s] for s in plan.seeds if s in mine and baseline is not None and s in baseline
        ]
        return CandidateResult(
            label=point.label,
            config=copy.deepcopy(point.config),
            trial_id=point.trial_id,
            posterior_mean=point.posterior_mean,
            values=mine,
            mean=t_interval(list(mine.values())) if mine else None,
            difference=t_interval(paired) if paired else None,
        )

    baseline = result(plan.baseline, None)
    return Confirmation(
        seeds=list(plan.seeds),
        baseline=baseline,
        candidates=[result(c, baseline.values) for c in plan.candidates],
        # Without candidates nothing runs, not even the baseline.
        planned=len(plan.points) * len(plan.seeds) if plan.candidates else 0,
        finished=sum((p.label, s) in values for p in plan.points for s in plan.seeds)
        if plan.candidates
        else 0,
        note=plan.note,
    )
