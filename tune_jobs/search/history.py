"""What a searcher knows about its trials: configs, outcomes, pending points; as plain JSON state.

No Ray here: :class:`TrialHistory` is the searchers' memory, turned into the arrays the models fit
(:meth:`TrialHistory.observations`) and into the JSON a sweep checkpoints (:meth:`TrialHistory.to_state`).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from tune_jobs.search.space import SearchSpace

logger = logging.getLogger(__name__)

TrialStatus = Literal["pending", "completed", "failed"]


@dataclass
class TrialRecord:
    """What a searcher knows about one trial it proposed (or was told about)."""

    trial_id: str
    config: dict[str, Any]
    status: TrialStatus = "pending"
    value: float | None = None
    """The final metric value of a completed trial (as reported, not sign-flipped)."""
    reason: str | None = None
    """Why a trial failed: it raised, or its metric was missing, NaN or infinite."""
    results_seen: int = 0
    """Intermediate results received through ``on_trial_result``."""


def finite_number(value: Any) -> bool:
    """Whether a reported metric is a real, finite number (``bool`` is not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))


class TrialHistory:
    """The trials of one searcher, in suggestion order.

    Args:
        space: The search space the configs live in.
        metric: Result key of the objective.
    """

    def __init__(self, space: SearchSpace, metric: str) -> None:
        self.space = space
        self.metric = metric
        self.trials: dict[str, TrialRecord] = {}

    def __contains__(self, trial_id: str) -> bool:
        return trial_id in self.trials

    def __len__(self) -> int:
        return len(self.trials)

    def config_of(self, trial_id: str) -> dict[str, Any]:
        """A copy of the config proposed for ``trial_id``."""
        return copy.deepcopy(self.trials[trial_id].config)

    def add(self, trial_id: str, config: dict[str, Any]) -> None:
        """Record a new pending trial."""
        self.trials[trial_id] = TrialRecord(trial_id=trial_id, config=copy.deepcopy(config))

    def count_result(self, trial_id: str) -> None:
        """Count an intermediate result of ``trial_id`` (unknown trials are ignored)."""
        record = self.trials.get(trial_id)
        if record is not None:
            record.results_seen += 1

    def complete(self, trial_id: str, result: Mapping[str, Any] | None, error: bool) -> None:
        """Record how a trial ended; errors and missing or non-finite values make it failed.

        A failed trial that Tune resumes (``resume_errored``) and that then completes is recorded
        as completed; a completed trial is never changed.
        """
        record = self.trials.get(trial_id)
        if record is None:
            logger.warning("searcher: completion of unknown trial %s ignored", trial_id)
            return
        if record.status == "completed":
            return
        value = None if result is None else result.get(self.metric)
        if error:
            reason = "error"
        elif value is None:
            reason = f"no `{self.metric}` in the final result"
        elif not finite_number(value):
            reason = f"`{self.metric}` is {value!r}"
        else:
            record.status, record.value, record.reason = "completed", float(value), None
            return
        if record.status == "pending":
            record.status, record.reason = "failed", reason
            logger.warning("searcher: trial %s failed (%s); kept out of the model", trial_id, reason)

    def records(self, status: TrialStatus | None = None) -> list[TrialRecord]:
        """Trial records in suggestion order, optionally only those with ``status``."""
        return [r for r in self.trials.values() if status is None or r.status == status]

    def observations(self, sign: float) -> tuple[np.ndarray, np.ndarray]:
        """Completed trials as model vectors ``x`` ``(n, D)`` and values ``sign * value`` ``(n,)`` to maximise."""
        done = self.records("completed")
        if not done:
            return np.zeros((0, self.space.dim)), np.zeros(0)
        x = np.stack([self.space.to_vector(r.config) for r in done])  # (n, D)
        y = np.array([sign * r.value for r in done], dtype=np.float64)  # (n,)
        return x, y

    def unfinished(self) -> np.ndarray:
        """Model vectors ``(p, D)`` of the pending and failed trials: points a proposal should avoid."""
        vectors = [self.space.to_vector(r.config) for r in self.trials.values() if r.status != "completed"]
        return np.array(vectors, dtype=np.float64).reshape(-1, self.space.dim)

    def to_state(self) -> list[dict[str, Any]]:
        """The records as JSON-ready dicts."""
        return [asdict(r) for r in self.trials.values()]

    def load_state(self, records: list[dict[str, Any]]) -> None:
        """Replace the records with those of :meth:`to_state`."""
        self.trials = {r["trial_id"]: TrialRecord(**r) for r in records}
