"""The searcher a sweep config names, ready for ``tune.TuneConfig(search_alg=...)``."""

from __future__ import annotations

from typing import Literal

from ray.tune.search import ConcurrencyLimiter, Searcher

from dense_reward.config import ConfigError
from tune_jobs.config import SweepConfig
from tune_jobs.search.botorch_search import BoTorchSearcher
from tune_jobs.search.optuna_search import SimplexOptunaSearch
from tune_jobs.search.random_search import RandomSimplexSearcher
from tune_jobs.search.space import SearchSpace


def make_searcher(config: SweepConfig, space: SearchSpace | None = None) -> ConcurrencyLimiter:
    """The searcher named by ``config.search.searcher``, limited to ``search.max_concurrent`` trials.

    It maximises ``val_reward``, proposes ``search.points_to_evaluate`` first (knobs at their
    config values), is seeded with ``search.seed`` and treats trials that end before
    ``ppo.epochs`` epochs (early stopping) as stopped, not as full-budget observations. The returned ``ConcurrencyLimiter`` holds the
    searcher itself in ``.searcher``.
    """
    search = config.search
    space = space or SearchSpace.from_config(config)
    points = []
    for i, weights in enumerate(search.points_to_evaluate):
        try:
            points.append(space.point(weights))
        except ValueError as error:
            raise ConfigError(f"search.points_to_evaluate[{i}]: {error}") from None
    epochs = config.ppo.epochs
    searcher: Searcher
    if search.searcher == "botorch":
        searcher = BoTorchSearcher(
            space, points_to_evaluate=points, seed=search.seed, max_epochs=epochs, n_init=search.n_init
        )
    elif search.searcher in ("optuna-tpe", "optuna-gp"):
        sampler: Literal["tpe", "gp"] = "tpe" if search.searcher == "optuna-tpe" else "gp"
        searcher = SimplexOptunaSearch(
            space,
            sampler=sampler,
            points_to_evaluate=points,
            seed=search.seed,
            n_init=search.n_init,
            max_epochs=epochs,
        )
    elif search.searcher == "random":
        searcher = RandomSimplexSearcher(
            space, points_to_evaluate=points, seed=search.seed, max_epochs=epochs
        )
    else:
        raise ConfigError(f"search.searcher: unknown searcher {search.searcher!r}")
    return ConcurrencyLimiter(searcher, max_concurrent=search.max_concurrent)
