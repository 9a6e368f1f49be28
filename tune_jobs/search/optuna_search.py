"""Optuna's TPE and GP samplers on the weight simplex (and knob box), through Ray's ``OptunaSearch``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import optuna
from ray.tune.search.optuna import OptunaSearch

from tune_jobs.config import METRIC, MODE
from tune_jobs.search.history import EPOCH_KEY, finite_number
from tune_jobs.search.space import SearchSpace


class SimplexOptunaSearch(OptunaSearch):
    """Ray's ``OptunaSearch`` on the ratio cube of the space, suggesting configs on the simplex.

    Optuna samples ``d`` source ratios and ``k`` knob positions in ``[0, 1]``;
    :meth:`SearchSpace.from_ratios` normalises the ratios into weights, so the config Ray passes to
    the trainable holds weights on the simplex and never the latent values. (The stick-breaking
    cube of :meth:`SearchSpace.from_unit` would map whole faces, where the samplers like to look,
    onto single corners.) Trials stopped early (``epoch`` below ``max_epochs``) are told to Optuna
    as pruned, not as complete with a full-budget value.

    Args:
        space: The search space.
        sampler: ``"tpe"`` (multivariate TPE) or ``"gp"`` (Optuna's GPSampler).
        metric: Result key of the objective.
        mode: ``"max"`` or ``"min"``.
        points_to_evaluate: Full trial configs proposed first.
        seed: Seed of the sampler.
        n_init: Random trials before the sampler models the objective.
        max_epochs: A trial's full budget in epochs (``None``: no early stopping).
    """

    def __init__(
        self,
        space: SearchSpace,
        sampler: Literal["tpe", "gp"] = "tpe",
        metric: str = METRIC,
        mode: str = MODE,
        points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
        seed: int = 0,
        n_init: int = 5,
        max_epochs: int | None = None,
    ) -> None:
        self.search_space = space
        self.max_epochs = max_epochs
        self.latent_names = [f"ratio:{source}" for source in space.sources] + [
            f"knob:{name}" for name in space.knob_names
        ]
        if sampler == "tpe":
            optuna_sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=n_init, multivariate=True
            )
        elif sampler == "gp":
            optuna_sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_init)
        else:
            raise ValueError(f"sampler must be 'tpe' or 'gp', got {sampler!r}")
        latent_points = []
        for i, point in enumerate(points_to_evaluate or []):
            if not space.contains(point):
                raise ValueError(f"points_to_evaluate[{i}] is not in the search space: {dict(point)}")
            latent_points.append(dict(zip(self.latent_names, space.to_ratios(point).tolist(), strict=True)))
        distributions = {name: optuna.distributions.FloatDistribution(0.0, 1.0) for name in self.latent_names}
        super().__init__(
            space=distributions,
            metric=metric,
            mode=mode,
            points_to_evaluate=latent_points,
            sampler=optuna_sampler,
        )

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        latent = super().suggest(trial_id)
        if latent is None:
            return None
        return self.search_space.from_ratios(np.array([latent[name] for name in self.latent_names]))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Optuna only uses intermediate values for pruning; a missing or non-finite one must not crash the sweep.
        if finite_number(result.get(self.metric)):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        value = None if result is None else result.get(self.metric)
        if value is not None and not finite_number(value):
            result, error = None, True
        epoch = None if result is None else result.get(EPOCH_KEY)
        if self.max_epochs is not None and finite_number(epoch) and epoch < self.max_epochs:
            result = None  # no value and no error: Ray tells Optuna the trial was pruned
        super().on_trial_complete(trial_id, result=result, error=error)
