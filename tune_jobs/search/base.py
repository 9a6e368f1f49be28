"""The Ray ``Searcher`` side shared by the searchers that keep their own trial history (BoTorch, random)."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.search import Searcher
from ray.tune.search.variant_generator import parse_spec_vars

from tune_jobs.config import METRIC, MODE
from tune_jobs.files import write_atomically
from tune_jobs.search.history import TrialHistory, TrialRecord, TrialStatus
from tune_jobs.search.space import WEIGHTS_KEY, SearchSpace

STATE_FORMAT = "dense-reward/searcher-state"
STATE_VERSION = 1


class HistorySearcher(Searcher):
    """A Ray ``Searcher`` whose proposals are a pure function of the seed, the suggestion index and the history.

    So a restored searcher proposes what the uninterrupted one would have. Subclasses implement
    :meth:`_propose` and may extend :meth:`get_state` / :meth:`set_state`.

    Args:
        space: The search space.
        metric: Result key of the objective.
        mode: ``"max"`` or ``"min"``.
        points_to_evaluate: Full trial configs (see :meth:`SearchSpace.point`) proposed first, in order.
        seed: Seed of every random choice.
        max_epochs: A trial's full budget in epochs; trials that end earlier (early stopping) are
            kept out of the model (see :mod:`tune_jobs.search.history`). ``None``: no early stopping.
    """

    CKPT_FILE_TMPL = "searcher-state-{}.json"
    kind = "history"

    def __init__(
        self,
        space: SearchSpace,
        metric: str = METRIC,
        mode: str = MODE,
        points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
        seed: int = 0,
        max_epochs: int | None = None,
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        super().__init__(metric=metric, mode=mode)
        self.space = space
        self.seed = int(seed)
        self.points_to_evaluate = [self._checked_point(p, i) for i, p in enumerate(points_to_evaluate or [])]
        self.history = TrialHistory(space, metric, max_epochs)
        self.num_suggested = 0

    # ----------------------------------------------------------------------------------------------
    # Ray Tune Searcher API
    # ----------------------------------------------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Take Tune's metric and mode; refuse a ``param_space`` that holds search domains of its own."""
        _, domain_vars, grid_vars = parse_spec_vars(config or {})
        if domain_vars or grid_vars:
            return False
        if metric:
            self._metric = self.history.metric = metric
        if mode:
            self._mode = mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """The next trial config ``{"weights": {...}, <knobs>}``; always on the simplex and in the box."""
        if trial_id in self.history:
            return self.history.config_of(trial_id)
        config = self._propose(self.num_suggested)
        self.num_suggested += 1
        self.history.add(trial_id, config)
        return copy.deepcopy(config)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.history.count_result(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Record the final result (see :meth:`TrialHistory.complete`)."""
        self.history.complete(trial_id, result, error)

    def add_evaluated_point(
        self,
        parameters: dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Add a trial evaluated elsewhere (e.g. a previous sweep) to the history."""
        if not self.space.contains(parameters):
            raise ValueError(f"evaluated point is not in the search space: {parameters}")
        config = self.space.point(parameters[WEIGHTS_KEY], {k: parameters[k] for k in self.space.knob_names})
        trial_id = f"evaluated-{len(self.history)}"
        self.history.add(trial_id, config)
        self.history.complete(trial_id, None if pruned else {self.metric: value}, error=error)

    # ----------------------------------------------------------------------------------------------
    # history
    # ----------------------------------------------------------------------------------------------

    def records(self, status: TrialStatus | None = None) -> list[TrialRecord]:
        """Trial records in suggestion order, optionally only those with ``status``."""
        return self.history.records(status)

    def observations(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Completed trials as model vectors ``x`` ``(n, D)``, values ``y`` ``(n,)`` to maximise and
        their variances ``(n,)`` (``None`` unless every one reported a sem)."""
        return self.history.observations(1.0 if self.mode == "max" else -1.0)

    # ----------------------------------------------------------------------------------------------
    # save / restore (plain JSON)
    # ----------------------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this searcher is, as JSON-ready data."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "kind": self.kind,
            "space": self.space.signature(),
            "metric": self.metric,
            "mode": self.mode,
            "seed": self.seed,
            "points_to_evaluate": self.points_to_evaluate,
            "num_suggested": self.num_suggested,
            "trials": self.history.to_state(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`get_state` output; refuse state of another kind of searcher or space."""
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise ValueError(
                f"not a searcher state of format {STATE_FORMAT} v{STATE_VERSION}: "
                f"format={state.get('format')!r}, version={state.get('version')!r}"
            )
        if state["kind"] != self.kind:
            raise ValueError(f"searcher state is for a `{state['kind']}` searcher, not `{self.kind}`")
        if state["space"] != self.space.signature():
            raise ValueError(
                f"searcher state was saved for the space {state['space']}, "
                f"but this sweep searches {self.space.signature()}"
            )
        self._metric, self._mode = state["metric"], state["mode"]
        self.history.metric = self._metric
        self.seed = int(state["seed"])
        self.points_to_evaluate = [
            self._checked_point(p, i) for i, p in enumerate(state["points_to_evaluate"])
        ]
        self.num_suggested = int(state["num_suggested"])
        self.history.load_state(state["trials"])

    def save(self, checkpoint_path: str) -> None:
        """Write :meth:`get_state` as JSON (Ray calls this after every trial event)."""
        write_atomically(checkpoint_path, json.dumps(self.get_state(), allow_nan=False))

    def restore(self, checkpoint_path: str) -> None:
        """Read a file written by :meth:`save`."""
        path = Path(checkpoint_path)
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read searcher state {path}: {error}") from None
        if not isinstance(state, dict):
            raise ValueError(f"searcher state {path} is not a JSON object")
        try:
            self.set_state(state)
        except (KeyError, TypeError) as error:
            raise ValueError(f"searcher state {path} is incomplete or malformed: {error!r}") from None

    # ----------------------------------------------------------------------------------------------
    # for subclasses
    # ----------------------------------------------------------------------------------------------

    def _propose(self, index: int) -> dict[str, Any]:
        """The config of suggestion number ``index`` (0-based), given the current history."""
        raise NotImplementedError

    def _checked_point(self, point: Mapping[str, Any], index: int) -> dict[str, Any]:
        if not self.space.contains(point):
            raise ValueError(f"points_to_evaluate[{index}] is not in the search space: {dict(point)}")
        return self.space.point(point[WEIGHTS_KEY], {k: point[k] for k in self.space.knob_names})

    def _suggestion_seed(self, index: int) -> int:
        """A well-mixed seed for suggestion ``index``: a fixed function of (seed, index)."""
        return int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
