"""The mixing weights' rules, in one place: source names, the simplex check, the projection.

Weights ``w`` live on the probability simplex over the chosen sources: every ``w_k >= 0`` and
``sum_k w_k == 1``. Config validation, shaping, the search space and the trainable all check and
project through the functions here, with the one tolerance :data:`TOLERANCE`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from dense_reward.errors import UserError

SOURCES = ("sparse", "attention", "redistribution", "shap", "lime", "integrated_gradients", "log_ratio")
"""Every attribution source the library knows, in a fixed order."""

REMOVED_SOURCES = {
    "gradient": "removed: first-order gradient credit ranked tokens worse than integrated_gradients at 1-2 steps "
    "on both the demo and the credit gym (docs/results.md); use integrated_gradients with n_steps 2",
}
"""Source names that once existed -> why they are gone and what to use instead."""

TOLERANCE = 1e-6
"""How far a weight vector's sum may be from 1 (and a weight below 0) and still count as on the simplex.

Optimisers meet the simplex constraint to about this precision; anything further off is an input error."""


NEGLIGIBLE_WEIGHT = 1e-3
"""Weights below this are set to 0 in a searched point (`drop_negligible`).

A source that weighs less moves each token's reward by under 0.1 % of the sequence reward, yet a trial
would pay its whole attribution cost; optimisers on the simplex return such weights (down to 1e-17) on
every face they visit."""


class WeightsError(UserError, ValueError):
    """Unknown source names, or weights off the simplex; the message names the field and the values."""


def check_sources(sources: Iterable[str], field: str = "shaping.sources") -> list[str]:
    """``sources`` as a list, after checking each is known, none repeats and there is at least one."""
    sources = list(sources)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        removed = "".join(f"; {s!r}: {REMOVED_SOURCES[s]}" for s in unknown if s in REMOVED_SOURCES)
        raise WeightsError(f"{field}: unknown source(s) {unknown}; known: {list(SOURCES)}{removed}")
    if len(set(sources)) != len(sources):
        raise WeightsError(f"{field}: sources repeat: {sources}")
    if not sources:
        raise WeightsError(f"{field}: at least one source is needed")
    return sources


def check_weights(
    weights: Mapping[str, float],
    sources: Sequence[str] | None = None,
    field: str = "shaping.weights",
) -> dict[str, float]:
    """Weights as exact floats on the simplex, after checking them.

    Args:
        weights: source name -> weight; sources left out weigh 0.
        sources: the sources the weights may name (default: every known source).
        field: the config field named in errors.

    Returns:
        The weights as floats, rescaled to sum to exactly 1 (they were within :data:`TOLERANCE` of it).

    Raises:
        WeightsError: an unknown or disallowed source, a non-finite or negative weight, or a sum off 1.
    """
    if not weights:
        raise WeightsError(f"{field}: no weights given; e.g. {{'sparse': 1.0}}")
    allowed = SOURCES if sources is None else tuple(sources)
    unknown = sorted(k for k in weights if k not in allowed)
    if unknown:
        where = "known sources" if sources is None else "sources"
        raise WeightsError(f"{field}: source(s) {unknown} not among the {where} {list(allowed)}")
    clean = {k: float(v) for k, v in weights.items()}
    bad = {k: v for k, v in clean.items() if not np.isfinite(v) or v < -TOLERANCE}
    if bad:
        raise WeightsError(f"{field}: weights must be finite and >= 0, got {bad}")
    total = sum(clean.values())
    if abs(total - 1.0) > TOLERANCE:
        raise WeightsError(f"{field}: weights must sum to 1 (the simplex), got {total:.6g} from {clean}")
    return {k: max(v, 0.0) / total for k, v in clean.items()}


def on_simplex(vector: np.ndarray, atol: float = TOLERANCE) -> bool:
    """Whether a ``(d,)`` vector is finite, ``>= -atol`` everywhere and sums to 1 within ``atol``."""
    vector = np.asarray(vector, dtype=np.float64)
    return bool(np.all(np.isfinite(vector)) and np.all(vector >= -atol) and abs(vector.sum() - 1.0) <= atol)


def project(vector: np.ndarray) -> np.ndarray:
    """The Euclidean projection of a ``(d,)`` vector onto the probability simplex.

    The sort-based algorithm of Duchi et al., "Efficient Projections onto the l1-Ball for Learning in
    High Dimensions" (ICML 2008), Figure 1: the result is ``max(v - theta, 0)`` for the one ``theta``
    that makes it sum to 1. A point already on the simplex is returned unchanged (up to rounding).
    """
    vector = np.asarray(vector, dtype=np.float64).reshape(-1)
    if vector.size == 0:
        raise WeightsError("weights: cannot project an empty weight vector")
    if not np.all(np.isfinite(vector)):
        raise WeightsError(f"weights: cannot project a non-finite weight vector {vector.tolist()}")
    ordered = np.sort(vector)[::-1]
    cumulative = np.cumsum(ordered) - 1.0
    ranks = np.arange(1, vector.size + 1)
    rho = np.flatnonzero(ordered - cumulative / ranks > 0)[-1]
    theta = cumulative[rho] / (rho + 1)
    projected = np.clip(vector - theta, 0.0, None)
    return projected / projected.sum()


def drop_negligible(vector: np.ndarray, floor: float = NEGLIGIBLE_WEIGHT) -> np.ndarray:
    """A ``(d,)`` simplex point with the weights below `floor` set to 0 and the rest rescaled to sum to 1.

    Some weight is always kept: the largest of ``d`` weights summing to 1 is at least ``1/d``.
    """
    vector = np.asarray(vector, dtype=np.float64)
    kept = np.where(vector >= floor, vector, 0.0)
    if not kept.any():
        kept = np.where(vector == vector.max(), vector, 0.0)
    return kept / kept.sum()
