"""The answer of a sweep: the *recommended* weights, not simply the luckiest trial.

A trial's value is one noisy measurement; the largest of many noisy values is biased upward (the
winner's curse), so the best observed trial is often a lucky one. The recommendation is the
evaluated point whose GP posterior mean is highest: the GP pools each trial with its neighbours and
weighs each by its reported standard error, so a lucky value with a large sem among consistent
neighbours is shrunk toward them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tune_jobs.search import gp
from tune_jobs.search.space import SearchSpace

MIN_OBSERVATIONS = 3
"""Fewer observations than this: no GP, the recommendation is the best observed trial."""
Z_95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95% interval."""


@dataclass(frozen=True)
class Recommendation:
    """The recommended trial of a sweep and the best observed one.

    Indices are positions in the ``configs`` given to :func:`recommend`.
    """

    config: dict[str, Any]
    """The recommended trial config."""
    index: int
    """Its position."""
    mean: float
    """The GP posterior mean of the objective there (the observed value when ``method`` is ``best-observed``)."""
    lower: float | None
    """Lower end of the 95% interval: ``mean - 1.96 sd`` of the posterior mean (of the observation, by its
    sem, when ``method`` is ``best-observed``); ``None`` when no sem is known."""
    upper: float | None
    """Upper end of the 95% interval."""
    best_observed_index: int
    """Position of the trial with the highest observed value."""
    method: Literal["gp", "best-observed"]
    """How the recommendation was made."""
    note: str | None = None
    """Why the recommendation fell back to the best observed trial (``None`` for ``gp``)."""
    means: tuple[float, ...] = ()
    """``(n,)`` the GP posterior mean at every config (the observed values when ``method`` is
    ``best-observed``); ``index`` is its first maximiser. A confirmation phase ranks candidates by it."""


def recommend(
    space: SearchSpace,
    configs: Sequence[Mapping[str, Any]],
    values: Sequence[float],
    sems: Sequence[float | None] | None = None,
    min_observations: int = MIN_OBSERVATIONS,
    seed: int = 0,
) -> Recommendation:
    """The posterior-mean maximiser among the evaluated configs, with a 95% interval.

    Pass only trials that ran the full budget: a trial stopped early measured another, lower-fidelity
    objective (see :mod:`tune_jobs.search.history`).

    Args:
        space: The search space of the configs.
        configs: ``n`` evaluated trial configs.
        values: ``(n,)`` their observed values, to maximise.
        sems: ``(n,)`` their standard errors; the GP takes ``sem**2`` as each observation's noise
            when every one is given, and learns one noise level otherwise.
        min_observations: Fewer observations than this give the best observed trial.
        seed: Seed of the torch RNG during the fit.

    Returns:
        The recommendation; ``method == "best-observed"`` with a ``note`` when the GP could not be used
        (too few observations, or a failed fit).

    Raises:
        ValueError: no configs, lengths that differ, a non-finite value, or a config outside ``space``.
    """
    n = len(configs)
    if n == 0:
        raise ValueError("recommend: no evaluated configs")
    if len(values) != n or (sems is not None and len(sems) != n):
        raise ValueError(
            f"recommend: {n} configs but {len(values)} values and {None if sems is None else len(sems)} sems"
        )
    y = np.asarray(values, dtype=np.float64)  # (n,)
    if not np.all(np.isfinite(y)):
        raise ValueError(
            f"recommend: non-finite values at positions {np.flatnonzero(~np.isfinite(y)).tolist()}"
        )
    known = sems is not None and all(s is not None and math.isfinite(s) and s >= 0 for s in sems)
    sem = np.asarray(sems, dtype=np.float64) if known else None  # (n,)
    best = int(np.argmax(y))
    x = np.stack([space.to_vector(c) for c in configs])  # (n, D)

    def fallback(note: str) -> Recommendation:
        half = None if sem is None else Z_95 * float(sem[best])
        return Recommendation(
            config=copy.deepcopy(dict(configs[best])),
            index=best,
            mean=float(y[best]),
            lower=None if half is None else float(y[best]) - half,
            upper=None if half is None else float(y[best]) + half,
            best_observed_index=best,
            method="best-observed",
            note=note,
            means=tuple(float(v) for v in y),
        )

    if n < min_observations:
        return fallback(f"{n} observation(s), fewer than the {min_observations} a GP needs")
    from botorch.exceptions.errors import ModelFittingError

    try:
        with gp.bounded_torch(1, seed):
            model = gp.fit_gp(x, y, space.bounds, yvar=None if sem is None else sem**2)
            mean, sd = gp.posterior_mean_sd(model, x)  # (n,), (n,)
    except (ModelFittingError, RuntimeError, ValueError) as error:  # a failed optimiser or Cholesky
        return fallback(f"the GP fit failed: {error}")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(sd))):
        return fallback("the GP fit gave a non-finite posterior")
    pick = int(np.argmax(mean))
    return Recommendation(
        config=copy.deepcopy(dict(configs[pick])),
        index=pick,
        mean=float(mean[pick]),
        lower=float(mean[pick] - Z_95 * sd[pick]),
        upper=float(mean[pick] + Z_95 * sd[pick]),
        best_observed_index=best,
        method="gp",
        means=tuple(float(v) for v in mean),
    )
