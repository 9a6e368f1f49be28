"""Normalise per-source credit, mix it with simplex weights and scale it by the reward.

For weights w on the probability simplex over the sources (DESIGN.md section 1):

    dense_t = r * sum_k w_k * normalized_k[t]        so  sum_t dense_t == r

Sources whose credit is a distribution already (the explainer says so: `is_distribution`, e.g. `sparse`
and `attention`) are only renormalised; the others go through the configured normaliser. `DenseReward` runs the whole chain for PPO: decode the policy
tokens, score with the RM, explain with every source, shape.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from dense_reward.attribution import EXPLAINERS, build_explainer
from dense_reward.attribution.align import align_credit, policy_token_offsets
from dense_reward.attribution.attention import AttentionExplainer
from dense_reward.attribution.base import Explainer, ScoredBatch
from dense_reward.attribution.sparse import last_token_one_hot
from dense_reward.config import ShapingConfig
from dense_reward.errors import ConfigWarning, UserError
from dense_reward.reward_model import RewardModel
from dense_reward.simplex import check_weights

NORMALIZERS = ("softmax", "scaled-softmax", "l1", "signed")
SIGNED_MIN_RATIO = 1e-3
"""`signed` falls back to `sparse` when |sum a| < SIGNED_MIN_RATIO * sum |a| (the scale would explode)."""
NEAR_EVEN_SPREAD = 0.05
"""A source whose normalised credit lies this close to an even split (`spread`, mean over a batch) is
warned about: its weight then acts as an even share of the reward over the tokens, whatever it credits.
(On the demo's RM plain softmax at tau 1 leaves shap, lime and redistribution at 0.005-0.03; attention,
and scaled-softmax at tau 1, at 0.25-0.8.)"""
CONSTANT_CREDIT = 1e-9
"""`scaled-softmax` gives the even split when sd(a) <= CONSTANT_CREDIT * max |a|: credit that differs only
by rounding is constant, and dividing by its sd would blow the rounding up into a sharp distribution."""
_warned_even: set[tuple[str, float]] = set()
"""(source, tau) pairs already warned about in this process (see `DenseReward`)."""


class ShapingError(UserError, ValueError):
    """Bad weights, a NaN reward or attribution, or mismatched shapes; the message names the culprit."""


# --------------------------------------------------------------------------------------------------
# normalisers
# --------------------------------------------------------------------------------------------------


def normalize_credit(values: np.ndarray, method: str = "softmax", tau: float = 1.0) -> np.ndarray:
    """Turn one response's credit (T,) into weights (T,) that sum to 1 (empty stays empty).

    - ``softmax``: softmax(a / tau), as in Koo et al. (arXiv 2504.16272);
    - ``scaled-softmax``: softmax(a / (tau * sd(a))), sd over the response's tokens: the same, with tau
      in units of the credit's own spread, so it sharpens alike on every reward model. Plain ``softmax``
      at tau = 1 flattens credit that spans a few hundredths (a reward model scoring in [0, 1]) into
      an almost even split; constant credit gives the even split;
    - ``l1``: |a| / sum |a|;
    - ``signed``: a / sum a (keeps negative credit).
    ``l1`` and ``signed`` fall back to one-hot on the last token when their denominator is ~0.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if method not in NORMALIZERS:
        raise ShapingError(f"shaping.normalize: unknown normaliser {method!r}; known: {list(NORMALIZERS)}")
    if tau <= 0:
        raise ShapingError(f"shaping.tau: must be > 0, got {tau}")
    if values.size == 0:
        return values
    if method == "scaled-softmax":
        sd = values.std()
        if sd <= CONSTANT_CREDIT * np.abs(values).max():
            return np.full(values.size, 1.0 / values.size)
        tau = tau * sd
        method = "softmax"
    if method == "softmax":
        z = values / tau
        z = np.exp(z - z.max())
        return z / z.sum()
    magnitude = np.abs(values).sum()
    if method == "l1":
        return np.abs(values) / magnitude if magnitude > 0 else last_token_one_hot(values.size)
    total = values.sum()
    if magnitude == 0 or abs(total) < SIGNED_MIN_RATIO * magnitude:
        return last_token_one_hot(values.size)
    return values / total


def spread(unit: np.ndarray) -> float:
    """Total variation distance of a normalised credit (T,) from the even split: 0 = even, near 1 = one token.

    `signed` weights may be negative; their magnitudes |w| / sum |w| are compared, so the value stays in [0, 1).
    """
    unit = np.abs(np.asarray(unit, dtype=np.float64).reshape(-1))
    total = unit.sum()
    if not unit.size or total <= 0:
        return 0.0
    return float(0.5 * np.abs(unit / total - 1.0 / unit.size).sum())


def as_distribution(values: np.ndarray) -> np.ndarray:
    """Renormalise non-negative credit (T,) to sum to 1; one-hot on the last token when it is all zero."""
    values = np.clip(np.asarray(values, dtype=np.float64).reshape(-1), 0.0, None)
    total = values.sum()
    if values.size and total <= 0:
        return last_token_one_hot(values.size)
    return values / total if values.size else values


# --------------------------------------------------------------------------------------------------
# weights and shaping
# --------------------------------------------------------------------------------------------------


def shape(
    attributions: Mapping[str, Sequence[np.ndarray]],
    weights: Mapping[str, float],
    rewards: Sequence[float] | np.ndarray,
    normalize: str = "softmax",
    tau: float = 1.0,
    distribution_sources: Collection[str] | None = None,
) -> list[np.ndarray]:
    """Dense per-token rewards from per-source credit.

    Args:
        attributions: source name -> one (T_i,) credit array per response.
        weights: source name -> weight, on the simplex; sources with weight 0 may be missing.
        rewards: (B,) sequence-level r.
        normalize: one of `NORMALIZERS` (applied to every source but the distribution sources).
        tau: temperature of `softmax`; of `scaled-softmax` in units of each response's credit sd.
        distribution_sources: sources whose credit is a distribution already, only renormalised;
            None = those whose explainer says `is_distribution`.

    Returns:
        One (T_i,) float64 array per response; each sums to its r (an empty response gets an empty array).
    """
    weights = check_weights(weights)
    if distribution_sources is None:
        distribution_sources = {name for name, explainer in EXPLAINERS.items() if explainer.is_distribution}
    rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(rewards))
    if bad.size:
        raise ShapingError(
            f"reward of sample {int(bad[0])} is {rewards[bad[0]]} ({bad.size} non-finite in the batch); "
            "check the reward model and its inputs"
        )
    active = {k: w for k, w in weights.items() if w > 0}
    missing = sorted(k for k in active if k not in attributions)
    if missing:
        raise ShapingError(f"weights put mass on source(s) {missing} but no attributions were computed for them")
    for name in active:
        if len(attributions[name]) != len(rewards):
            raise ShapingError(
                f"source {name!r} gave {len(attributions[name])} attribution arrays for {len(rewards)} rewards"
            )
    dense = []
    for i, r in enumerate(rewards):
        lengths = {name: np.asarray(attributions[name][i]).size for name in active}
        if len(set(lengths.values())) > 1:
            raise ShapingError(f"sample {i}: sources disagree on the number of response tokens: {lengths}")
        length = next(iter(lengths.values()))
        mix = np.zeros(length)
        for name, w in active.items():
            credit = np.asarray(attributions[name][i], dtype=np.float64).reshape(-1)
            if not np.all(np.isfinite(credit)):
                raise ShapingError(f"sample {i}: source {name!r} produced a non-finite attribution")
            unit = as_distribution(credit) if name in distribution_sources else normalize_credit(credit, normalize, tau)
            mix += w * unit
        dense.append(r * mix)
    return dense


def source_spreads(
    attributions: Mapping[str, Sequence[np.ndarray]],
    sources: Collection[str],
    normalize: str = "softmax",
    tau: float = 1.0,
) -> dict[str, float]:
    """Mean `spread` over the batch of each of `sources` (non-distribution ones) after `normalize`."""
    spreads = {}
    for name in sources:
        values = [spread(normalize_credit(c, normalize, tau)) for c in attributions[name] if np.size(c) > 1]
        if values:
            spreads[name] = float(np.mean(values))
    return spreads


# --------------------------------------------------------------------------------------------------
# the reward function PPO calls
# --------------------------------------------------------------------------------------------------


@dataclass
class RewardOutput:
    """What `DenseReward` returns for a batch of responses."""

    scores: np.ndarray
    """(B,) sequence-level r."""
    dense: list[np.ndarray]
    """Per response: one float per policy response token; sums to ``scores[i]``."""
    responses: list[str]
    """Decoded response texts."""
    attributions: dict[str, list[np.ndarray]] = field(default_factory=dict)
    """Raw per-source credit over policy tokens (for heatmaps)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds: ``scoring_seconds``, ``attribution_seconds`` and ``<source>_seconds`` per source.

    `attention` credit is read off the scoring forward, so its time is part of ``scoring_seconds``."""
    spreads: dict[str, float] = field(default_factory=dict)
    """Per weighted source that goes through the normaliser: how far its normalised credit lies from an
    even split over the tokens (`spread`, mean over the batch)."""


def resolve_weights(
    shaping: ShapingConfig, weights: Mapping[str, float] | None = None
) -> tuple[tuple[str, ...], dict[str, float]]:
    """(sources to compute, checked weights): `weights`, else ``shaping.weights``, else all on `sparse`.

    `sparse` may carry weight even when ``shaping.sources`` leaves it out (it costs nothing); it is then
    added to the sources.
    """
    sources = list(shaping.sources)
    weights = weights if weights is not None else (shaping.weights or {"sparse": 1.0})
    if "sparse" not in sources and weights.get("sparse", 0.0) > 0:
        sources.append("sparse")
    return tuple(sources), check_weights(weights, sources, field="shaping.weights")


class DenseReward:
    """Sequence reward -> dense per-token reward for a batch of policy responses.

    Args:
        reward_model: the RM that scores and is explained.
        policy_tokenizer: decodes the response token ids (and gives their character spans).
        shaping: the `shaping` section: sources, normaliser, tau and per-source options.
        weights: simplex weights over the sources (missing ones are 0); None = ``shaping.weights``,
            else all on `sparse`. `sparse` may carry weight even when it is not in ``shaping.sources``.
        raw_prompts: policy-formatted prompt -> the raw prompt the RM reads instead (e.g.
            `dense_reward.data.PromptSplits.raw`): the policy's chat template is the policy's business;
            the RM joins the raw text with its own template. Prompts not in it are read as they are.
        seed: seed of the sampling explainers (`lime`, `shap`).
        skip_zero_weight: do not compute sources whose weight is 0 (they are then absent from
            ``RewardOutput.attributions``); set False to see every source, e.g. for heatmaps.
    """

    def __init__(
        self,
        reward_model: RewardModel,
        policy_tokenizer,
        shaping: ShapingConfig,
        weights: Mapping[str, float] | None = None,
        raw_prompts: Mapping[str, str] | None = None,
        seed: int = 0,
        skip_zero_weight: bool = True,
    ) -> None:
        self.sources, self.weights = resolve_weights(shaping, weights)
        sources = self.sources
        self.reward_model = reward_model
        self.policy_tokenizer = policy_tokenizer
        self.normalize = shaping.normalize
        self.tau = shaping.tau
        self.raw_prompts = MappingProxyType(dict(raw_prompts or {}))
        options = explainer_options(shaping, seed)
        chosen = [s for s in sources if not skip_zero_weight or self.weights.get(s, 0.0) > 0]
        self.explainers: dict[str, Explainer] = {
            name: build_explainer(name, reward_model, **options.get(name, {})) for name in chosen
        }
        self.distribution_sources = frozenset(
            name for name in sources if EXPLAINERS[name].is_distribution
        )

    def __call__(self, prompts: Sequence[str], response_token_ids: Sequence[Sequence[int]]) -> RewardOutput:
        """Score and shape a batch.

        Args:
            prompts: B prompt texts (as given to the policy).
            response_token_ids: B lists of policy token ids, up to and including the first EOS.
        """
        if len(prompts) != len(response_token_ids):
            raise ValueError(f"got {len(prompts)} prompts but {len(response_token_ids)} responses")
        prompts = [self.raw_prompts.get(p, p) for p in prompts]
        decoded = [policy_token_offsets(self.policy_tokenizer, ids) for ids in response_token_ids]
        responses = [text for text, _ in decoded]
        offsets = [spans for _, spans in decoded]
        timings: dict[str, float] = {}
        attributions: dict[str, list[np.ndarray]] = {}
        started = time.perf_counter()
        attention = self.explainers.get("attention")
        if isinstance(attention, AttentionExplainer):
            # ABC reads its credit off the scoring forward itself.
            scores, credits = attention.score_and_credit(list(prompts), responses)
            attributions["attention"] = [
                align_credit(c.spans, c.values, spans) for c, spans in zip(credits, offsets, strict=True)
            ]
        else:
            scores = self.reward_model.score(list(prompts), responses).double().numpy()  # (B,)
        timings["scoring_seconds"] = time.perf_counter() - started
        bad = np.flatnonzero(~np.isfinite(scores))
        if bad.size:
            raise ShapingError(
                f"reward of sample {int(bad[0])} is {scores[bad[0]]} ({bad.size} non-finite in the batch); "
                f"response: {responses[bad[0]][:80]!r}"
            )
        batch = ScoredBatch(list(prompts), responses, offsets, scores)
        attribution_started = time.perf_counter()
        for name, explainer in self.explainers.items():
            if name in attributions:
                timings[f"{name}_seconds"] = 0.0
                continue
            started = time.perf_counter()
            attributions[name] = explainer.explain(batch)
            timings[f"{name}_seconds"] = time.perf_counter() - started
        timings["attribution_seconds"] = time.perf_counter() - attribution_started
        dense = shape(attributions, self.weights, scores, self.normalize, self.tau, self.distribution_sources)
        normalised = [
            name for name, w in self.weights.items() if w > 0 and name not in self.distribution_sources
        ]
        spreads = source_spreads(attributions, normalised, self.normalize, self.tau)
        self._warn_even_spread(spreads, attributions)
        return RewardOutput(
            scores=scores,
            dense=dense,
            responses=responses,
            attributions=attributions,
            timings=timings,
            spreads=spreads,
        )

    def _warn_even_spread(self, spreads: Mapping[str, float], attributions: Mapping[str, list[np.ndarray]]) -> None:
        """Warn once per source and tau in this process when plain softmax flattens a source's credit into
        an almost even split."""
        if self.normalize != "softmax":
            return
        for name, value in spreads.items():
            if value >= NEAR_EVEN_SPREAD or (name, self.tau) in _warned_even:
                continue
            _warned_even.add((name, self.tau))
            span = float(np.mean([np.ptp(c) for c in attributions[name] if np.size(c) > 1]))
            warnings.warn(
                f"shaping: {name} credit spans about {span:.3g} per response, and softmax at shaping.tau="
                f"{self.tau:g} turns it into an almost even split of the reward (total variation {value:.3f} "
                f"from even; below {NEAR_EVEN_SPREAD} warns): its weight then spreads the reward evenly "
                "over the tokens, whatever the source credits. Set shaping.normalize: scaled-softmax (tau "
                "in units of the credit's own spread) or a smaller shaping.tau",
                ConfigWarning,
                stacklevel=3,
            )


def explainer_options(shaping: ShapingConfig, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per-source options from the `shaping` section (``shap.max_evals``, ``lime.num_samples``, seeds, ...)."""
    return {
        "attention": {"query": shaping.attention_query},
        "shap": {"max_evals": shaping.shap.max_evals, "seed": seed},
        "lime": {"num_samples": shaping.lime.num_samples, "seed": seed},
        "integrated_gradients": shaping.integrated_gradients.model_dump(),
        "log_ratio": shaping.log_ratio.model_dump(),
    }
