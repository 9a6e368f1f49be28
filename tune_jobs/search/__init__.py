"""Searchers that propose trial configs on the weight simplex (and knob box) for Ray Tune.

Laid out like ``ray.tune.search``: the space (:mod:`.space`), the trial history and its JSON state
(:mod:`.history`), the BoTorch math as pure functions (:mod:`.gp`), and one thin ``Searcher``
adapter per library (:mod:`.botorch_search`, :mod:`.optuna_search`, :mod:`.random_search`) on a
shared base (:mod:`.base`); :func:`make_searcher` (:mod:`.factory`) builds the one a sweep names,
and :func:`recommend` (:mod:`.recommendation`) gives a sweep's answer.

Names load on first use, so ``from tune_jobs.search import SearchSpace`` does not import Ray,
Optuna or BoTorch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tune_jobs.search.base import HistorySearcher
    from tune_jobs.search.botorch_search import BoTorchSearcher
    from tune_jobs.search.factory import make_searcher
    from tune_jobs.search.history import TrialRecord
    from tune_jobs.search.optuna_search import SimplexOptunaSearch
    from tune_jobs.search.random_search import RandomSimplexSearcher
    from tune_jobs.search.recommendation import Recommendation, recommend
    from tune_jobs.search.space import WEIGHTS_KEY, SearchSpace

_EXPORTS = {
    "BoTorchSearcher": "botorch_search",
    "HistorySearcher": "base",
    "RandomSimplexSearcher": "random_search",
    "Recommendation": "recommendation",
    "SearchSpace": "space",
    "SimplexOptunaSearch": "optuna_search",
    "TrialRecord": "history",
    "WEIGHTS_KEY": "space",
    "make_searcher": "factory",
    "recommend": "recommendation",
}

__all__ = [
    "WEIGHTS_KEY",
    "BoTorchSearcher",
    "HistorySearcher",
    "RandomSimplexSearcher",
    "Recommendation",
    "SearchSpace",
    "SimplexOptunaSearch",
    "TrialRecord",
    "make_searcher",
    "recommend",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
