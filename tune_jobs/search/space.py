"""The search space of a sweep: mixing weights on a simplex over 2 or more sources, plus optional box knobs.

A trial config is a plain dict ``{"weights": {source: w}, "<dotted knob name>": value}``, e.g.
``{"weights": {"sparse": 0.2, "attention": 0.8}, "ppo.kl_coef": 0.05}``. The space maps such configs
to and from three vector forms:

- the *model vector* ``x`` of length ``D = d + k`` (``d`` sources, ``k`` knobs): the ``d`` weights as
  they are, then each knob on its search scale (``log(value)`` for a log knob). The GP of the BoTorch
  searcher lives here, with the simplex as the equality constraint ``sum(x[:d]) == 1``.
- the *unit vector* ``u`` of length ``d - 1 + k`` in ``[0, 1]``: ``d - 1`` stick-breaking fractions,
  then each knob scaled to ``[0, 1]`` on its search scale. The stick fractions are warped so that a
  uniform ``u`` gives a uniform point on the simplex (Dirichlet(1)); quasi-random initial designs
  and random search draw here. A sampler that models the cube must not: the face ``u_0 = 1`` (all
  of it) maps onto the one corner ``w_0 = 1``.
- the *ratio vector* ``r`` of length ``d + k`` in ``[0, 1]``: one unnormalised ratio per source,
  ``w = r[:d] / sum(r[:d])``, then the knobs as in ``u``. No face of this cube collapses to a
  point: a face ``r_i = 0`` maps onto the face ``w_i = 0``, a face ``r_i = 1`` onto the region
  where ``w_i`` is the largest weight. Optuna's samplers search here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dense_reward.config import ConfigError
from dense_reward.simplex import check_sources, check_weights, drop_negligible, on_simplex, project
from tune_jobs.config import KnobSpec
from tune_jobs.config import SweepConfig as Config

MIN_SOURCES = 2

WEIGHTS_KEY = "weights"
"""Trial config key of the mixing weights."""


@dataclass(frozen=True, eq=False)
class SearchSpace:
    """A simplex over ``sources`` times a box over ``knobs``.

    Args:
        sources: Source names, in the order of the weight coordinates (at least 2, each known once).
        knobs: Dotted config field name -> bounds and scale, in the order of the knob coordinates.
        knob_defaults: Value of each knob used when a start point names only weights (e.g. a
            ``points_to_evaluate`` entry); knobs left out default to the middle of their box.
    """

    sources: tuple[str, ...]
    knobs: dict[str, KnobSpec] = field(default_factory=dict)
    knob_defaults: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sources = tuple(check_sources(self.sources))
        object.__setattr__(self, "sources", sources)
        if len(sources) < MIN_SOURCES:
            raise ConfigError(
                f"shaping.sources: a search needs at least {MIN_SOURCES} sources, got {len(sources)}: {list(sources)}"
            )
        if WEIGHTS_KEY in self.knobs:
            raise ConfigError(f"search.knobs: `{WEIGHTS_KEY}` is reserved for the mixing weights")
        defaults = {}
        for name, spec in self.knobs.items():
            value = self.knob_defaults.get(name)
            inside = value is not None and spec.low <= value <= spec.high
            defaults[name] = (
                float(value) if inside else self._from_search_scale(spec, 0.5 * sum(self._box(spec)))
            )
        object.__setattr__(self, "knob_defaults", defaults)

    # ----------------------------------------------------------------------------------------------
    # construction and shape
    # ----------------------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: Config) -> SearchSpace:
        """The space of a sweep: ``config.shaping.sources`` and ``config.search.knobs``.

        The knobs' current values in ``config`` (e.g. ``shaping.tau``) become their defaults.
        """
        dumped = config.model_dump()
        defaults = {}
        for name in config.search.knobs:
            node: Any = dumped
            for part in name.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise ConfigError(f"search.knobs: `{name}` is not a config field")
                node = node[part]
            if isinstance(node, int | float) and not isinstance(node, bool):
                defaults[name] = float(node)
        return cls(tuple(config.shaping.sources), dict(config.search.knobs), defaults)

    @property
    def num_sources(self) -> int:
        """``d``: the number of weight coordinates."""
        return len(self.sources)

    @property
    def num_knobs(self) -> int:
        """``k``: the number of box knobs."""
        return len(self.knobs)

    @property
    def dim(self) -> int:
        """``D = d + k``: length of a model vector."""
        return self.num_sources + self.num_knobs

    @property
    def unit_dim(self) -> int:
        """``d - 1 + k``: length of a unit vector."""
        return self.num_sources - 1 + self.num_knobs

    @property
    def knob_names(self) -> tuple[str, ...]:
        return tuple(self.knobs)

    @property
    def bounds(self) -> np.ndarray:
        """``2 x D`` lower and upper bounds of the model vector (weights in [0, 1], knobs on search scale)."""
        lower = [0.0] * self.num_sources + [self._box(s)[0] for s in self.knobs.values()]
        upper = [1.0] * self.num_sources + [self._box(s)[1] for s in self.knobs.values()]
        return np.array([lower, upper], dtype=np.float64)

    def signature(self) -> dict[str, Any]:
        """A plain description of the space, stored with searcher state to refuse a mismatched restore."""
        return {
            "sources": list(self.sources),
            "knobs": {n: {"low": s.low, "high": s.high, "log": s.log} for n, s in self.knobs.items()},
        }

    # ----------------------------------------------------------------------------------------------
    # model vector <-> trial config
    # ----------------------------------------------------------------------------------------------

    def to_vector(self, config: Mapping[str, Any]) -> np.ndarray:
        """The ``(D,)`` model vector of a trial config (other keys of ``config`` are ignored)."""
        weights = self._weights_of(config)
        knobs = []
        for name, spec in self.knobs.items():
            if name not in config:
                raise ValueError(f"trial config has no value for knob `{name}`: {dict(config)}")
            knobs.append(self._to_search_scale(spec, float(config[name])))
        return np.concatenate([weights, np.array(knobs, dtype=np.float64)])

    def from_vector(self, x: np.ndarray) -> dict[str, Any]:
        """The trial config of a ``(D,)`` model vector, projected onto the simplex and into the box.

        Optimisers meet the simplex constraint only to a tolerance (~1e-6); the Euclidean projection
        puts the weights on it to float64 precision (`_weight_dict`).
        """
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.dim,):
            raise ValueError(f"expected a model vector of shape ({self.dim},), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"model vector has non-finite entries: {x}")
        config: dict[str, Any] = {WEIGHTS_KEY: self._weight_dict(x[: self.num_sources])}
        for value, (name, spec) in zip(x[self.num_sources :], self.knobs.items(), strict=True):
            low, high = self._box(spec)
            config[name] = self._from_search_scale(spec, min(max(float(value), low), high))
        return config

    # ----------------------------------------------------------------------------------------------
    # unit vector <-> trial config
    # ----------------------------------------------------------------------------------------------

    def from_unit(self, u: np.ndarray, concentration: float = 1.0) -> dict[str, Any]:
        """The trial config of a ``(d - 1 + k,)`` unit vector; uniform ``u`` gives Dirichlet weights.

        Stick ``i`` (of ``d - 1``) takes the fraction ``v_i ~ Beta(a, a (d - 1 - i))`` of what is left
        (``a`` = `concentration`), by the inverse CDF of ``u_i``; these fractions make the weights
        symmetric Dirichlet(a) (https://en.wikipedia.org/wiki/Dirichlet_distribution#Marginal_beta_distributions).
        ``a = 1`` is uniform on the simplex (closed form ``v_i = 1 - (1 - u_i)^(1 / (d - 1 - i))``);
        ``a < 1`` puts the points near faces where few sources carry the weight.
        """
        u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
        if u.shape != (self.unit_dim,):
            raise ValueError(f"expected a unit vector of shape ({self.unit_dim},), got {u.shape}")
        if concentration <= 0:
            raise ValueError(f"concentration must be > 0, got {concentration}")
        d = self.num_sources
        weights = np.empty(d, dtype=np.float64)
        remaining = 1.0
        for i in range(d - 1):
            if concentration == 1.0:
                fraction = 1.0 - (1.0 - u[i]) ** (1.0 / (d - 1 - i))
            else:
                from scipy.stats import beta

                fraction = float(beta.ppf(u[i], concentration, concentration * (d - 1 - i)))
            weights[i] = remaining * fraction
            remaining -= weights[i]
        weights[d - 1] = max(remaining, 0.0)
        return self._config(weights, u[d - 1 :])

    def from_ratios(self, r: np.ndarray) -> dict[str, Any]:
        """The trial config of a ``(d + k,)`` ratio vector: weights ``r[:d] / sum(r[:d])``.

        All ratios 0 (a single point of the cube) gives uniform weights.
        """
        r = np.clip(np.asarray(r, dtype=np.float64), 0.0, 1.0)
        if r.shape != (self.num_sources + self.num_knobs,):
            raise ValueError(
                f"expected a ratio vector of shape ({self.num_sources + self.num_knobs},), got {r.shape}"
            )
        ratios = r[: self.num_sources]
        total = ratios.sum()
        weights = ratios / total if total > 0.0 else np.full(self.num_sources, 1.0 / self.num_sources)
        return self._config(weights, r[self.num_sources :])

    def to_ratios(self, config: Mapping[str, Any]) -> np.ndarray:
        """A ``(d + k,)`` ratio vector of a trial config: the weights over their largest, then the knobs.

        One of the many ratio vectors of the config (every positive multiple of the ratios gives
        the same weights); :meth:`from_ratios` maps it back.
        """
        weights = self._weights_of(config)
        x = self.to_vector(config)
        low, high = self.bounds[:, self.num_sources :]
        knobs = (x[self.num_sources :] - low) / (high - low)
        return np.clip(np.concatenate([weights / weights.max(), knobs]), 0.0, 1.0)

    def sample_uniform(self, rng: np.random.Generator) -> dict[str, Any]:
        """A trial config with Dirichlet(1) weights and knobs uniform on their search scale."""
        return self.from_unit(rng.random(self.unit_dim))

    # ----------------------------------------------------------------------------------------------
    # start points and checks
    # ----------------------------------------------------------------------------------------------

    def point(self, weights: Mapping[str, float], knobs: Mapping[str, float] | None = None) -> dict[str, Any]:
        """A full trial config from weights naming some sources (the rest get 0) and optional knob values.

        Knobs not given take :attr:`knob_defaults`. Raises ``ValueError`` (a
        :class:`~dense_reward.simplex.WeightsError` for weights) if a value is off the simplex or the box.
        """
        checked = check_weights(weights, self.sources, field=WEIGHTS_KEY)
        config: dict[str, Any] = {WEIGHTS_KEY: {s: checked.get(s, 0.0) for s in self.sources}}
        knobs = dict(knobs or {})
        unknown = [k for k in knobs if k not in self.knobs]
        if unknown:
            raise ValueError(f"knob(s) {unknown} are not searched; searched: {list(self.knobs)}")
        for name, spec in self.knobs.items():
            value = float(knobs.get(name, self.knob_defaults[name]))
            if not spec.low <= value <= spec.high:
                raise ValueError(f"knob `{name}` = {value} is outside [{spec.low}, {spec.high}]")
            config[name] = value
        return config

    def contains(self, config: Mapping[str, Any]) -> bool:
        """Whether ``config`` has every source's weight on the simplex (within its tolerance) and knobs in the box."""
        weights = config.get(WEIGHTS_KEY)
        if not isinstance(weights, Mapping) or set(weights) != set(self.sources):
            return False
        if not on_simplex(np.array([float(weights[s]) for s in self.sources], dtype=np.float64)):
            return False
        for name, spec in self.knobs.items():
            value = config.get(name)
            if not isinstance(value, int | float) or not spec.low <= float(value) <= spec.high:
                return False
        return True

    # ----------------------------------------------------------------------------------------------
    # helpers
    # ----------------------------------------------------------------------------------------------

    def _weight_dict(self, vector: np.ndarray) -> dict[str, float]:
        """Source -> weight of a ``(d,)`` vector: projected onto the simplex, then weights below
        `dense_reward.simplex.NEGLIGIBLE_WEIGHT` set to 0, so a trial never pays for a source that barely counts."""
        return dict(zip(self.sources, drop_negligible(project(vector)).tolist(), strict=True))

    def _config(self, weights: np.ndarray, knobs: np.ndarray) -> dict[str, Any]:
        """A trial config from ``(d,)`` weights (`_weight_dict`) and ``(k,)`` knob positions in [0, 1]."""
        config: dict[str, Any] = {WEIGHTS_KEY: self._weight_dict(weights)}
        for value, (name, spec) in zip(knobs, self.knobs.items(), strict=True):
            low, high = self._box(spec)
            config[name] = self._from_search_scale(spec, low + float(value) * (high - low))
        return config

    def _weights_of(self, config: Mapping[str, Any]) -> np.ndarray:
        weights = config.get(WEIGHTS_KEY)
        if not isinstance(weights, Mapping):
            raise ValueError(f"trial config has no `{WEIGHTS_KEY}` mapping: {dict(config)}")
        unknown = [s for s in weights if s not in self.sources]
        if unknown:
            raise ValueError(
                f"weights name source(s) {unknown} not in the searched sources {list(self.sources)}"
            )
        return np.array([float(weights.get(s, 0.0)) for s in self.sources], dtype=np.float64)

    @staticmethod
    def _box(spec: KnobSpec) -> tuple[float, float]:
        if spec.log:
            return math.log(spec.low), math.log(spec.high)
        return float(spec.low), float(spec.high)

    @staticmethod
    def _to_search_scale(spec: KnobSpec, value: float) -> float:
        return math.log(value) if spec.log else value

    @staticmethod
    def _from_search_scale(spec: KnobSpec, value: float) -> float:
        if not spec.log:
            return value
        # exp(log(x)) may land a hair outside [low, high]; the box is a hard promise.
        return min(max(math.exp(value), spec.low), spec.high)
