"""What a searcher knows about its trials: configs, outcomes, pending points; as plain JSON state.

No Ray here: :class:`TrialHistory` is the searchers' memory, turned into the arrays the models fit
(:meth:`TrialHistory.observations`) and into the JSON a sweep checkpoints (:meth:`TrialHistory.to_state`).

Early stopping (ASHA) ends some trials before the full budget of ``max_epochs`` epochs. Their last
value is *not* an observation of the objective: it was measured after fewer PPO epochs (a different,
lower-fidelity function of the weights), and the stopped trials are a biased selection (ASHA stops
the ones behind at their rung). Fed to the GP as full-budget values they would drag the model down
around those weights by an unknown amount. A multi-fidelity model (the epoch as an input) would need
several fidelities per region, which a sweep of a few dozen trials does not have. So a stopped trial
is recorded as ``"stopped"``: left out of the fit, not pending (nothing will come of it), and kept
only so that a searcher does not propose exactly the same point again.
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

TrialStatus = Literal["pending", "completed", "stopped", "failed"]

EPOCH_KEY = "epoch"
"""Result key of the PPO epochs a trial has run (1-based)."""


@dataclass
class TrialRecord:
    """What a searcher knows about one trial it proposed (or was told about)."""

    trial_id: str
    config: dict[str, Any]
    status: TrialStatus = "pending"
    value: float | None = None
    """The final metric value of a completed (or stopped) trial (as reported, not sign-flipped)."""
    sem: float | None = None
    """Its standard error (``<metric>_sem``), when the trial reported a finite one."""
    epoch: int | None = None
    """The epochs it ran (``epoch`` of the final result), when reported."""
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
        metric: Result key of the objective; ``<metric>_sem`` is the key of its standard error.
        max_epochs: The full budget of a trial; a final result with a smaller ``epoch`` marks an
            early-stopped trial. ``None``: every finished trial counts as full.
    """

    def __init__(self, space: SearchSpace, metric: str, max_epochs: int | None = None) -> None:
        self.space = space
        self.metric = metric
        self.max_epochs = max_epochs
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

        A result whose ``epoch`` is below ``max_epochs`` makes the trial stopped (see the module
        docstring). A failed trial that Tune resumes (``resume_errored``) and that then ends is
        recorded anew; a completed or stopped trial is never changed.
        """
        record = self.trials.get(trial_id)
        if record is None:
            logger.warning("searcher: completion of unknown trial %s ignored", trial_id)
            return
        if record.status in ("completed", "stopped"):
            return
        result = result or {}
        value = result.get(self.metric)
        if error:
            reason = "error"
        elif value is None:
            reason = f"no `{self.metric}` in the final result"
        elif not finite_number(value):
            reason = f"`{self.metric}` is {value!r}"
        else:
            sem, epoch = result.get(f"{self.metric}_sem"), result.get(EPOCH_KEY)
            record.value, record.reason = float(value), None
            record.sem = float(sem) if finite_number(sem) and sem >= 0 else None
            record.epoch = int(epoch) if finite_number(epoch) else None
            stopped = (
                self.max_epochs is not None and record.epoch is not None and record.epoch < self.max_epochs
            )
            record.status = "stopped" if stopped else "completed"
            return
        if record.status == "pending":
            record.status, record.reason = "failed", reason
            logger.warning("searcher: trial %s failed (%s); kept out of the model", trial_id, reason)

    def records(self, status: TrialStatus | None = None) -> list[TrialRecord]:
        """Trial records in suggestion order, optionally only those with ``status``."""
        return [r for r in self.trials.values() if status is None or r.status == status]

    def observations(self, sign: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The completed (full-budget) trials: what the GP fits.

        Returns:
            Model vectors ``x`` ``(n, D)``, values ``sign * value`` ``(n,)`` to maximise, and their
            variances ``sem**2`` ``(n,)``, or ``None`` when any completed trial reported no sem.
        """
        done = self.records("completed")
        if not done:
            return np.zeros((0, self.space.dim)), np.zeros(0), None
        x = np.stack([self.space.to_vector(r.config) for r in done])  # (n, D)
        y = np.array([sign * r.value for r in done], dtype=np.float64)  # (n,)
        if any(r.sem is None for r in done):
            return x, y, None
        return x, y, np.array([r.sem**2 for r in done], dtype=np.float64)

    def vectors(self, *statuses: TrialStatus) -> np.ndarray:
        """Model vectors ``(p, D)`` of the trials with one of ``statuses``, in suggestion order."""
        vectors = [self.space.to_vector(r.config) for r in self.trials.values() if r.status in statuses]
        return np.array(vectors, dtype=np.float64).reshape(-1, self.space.dim)

    def to_state(self) -> list[dict[str, Any]]:
        """The records as JSON-ready dicts."""
        return [asdict(r) for r in self.trials.values()]

    def load_state(self, records: list[dict[str, Any]]) -> None:
        """Replace the records with those of :meth:`to_state`."""
        self.trials = {r["trial_id"]: TrialRecord(**r) for r in records}
