"""The explainer contract and the registry of attribution sources by name.

Every source turns a scored batch into one float array per response over the response's **policy**
tokens. Sources that work on RM tokens return `TokenCredit` (RM-token spans and their credit)
from `credit`, and `RMTokenExplainer.explain` moves it onto policy tokens with `align.align_credit`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dense_reward.attribution.align import align_credit
from dense_reward.reward_model import RewardModel


@dataclass
class ScoredBatch:
    """Responses with their sequence-level rewards, as the explainers receive them."""

    prompts: list[str]
    """Prompt texts as the RM sees them (no chat template)."""
    responses: list[str]
    """Decoded response texts."""
    response_offsets: list[list[tuple[int, int]]]
    """Per response: the (start, end) character span in ``responses[i]`` of each policy token."""
    scores: np.ndarray
    """(B,) sequence-level r from the RM."""

    def __post_init__(self) -> None:
        sizes = {len(self.prompts), len(self.responses), len(self.response_offsets), len(self.scores)}
        if len(sizes) != 1:
            raise ValueError(
                f"ScoredBatch fields differ in length: {len(self.prompts)} prompts, {len(self.responses)} "
                f"responses, {len(self.response_offsets)} offset lists, {len(self.scores)} scores"
            )

    def __len__(self) -> int:
        return len(self.responses)


@runtime_checkable
class Explainer(Protocol):
    """A per-token credit source."""

    name: str

    def explain(self, batch: ScoredBatch) -> list[np.ndarray]:
        """One (T_i,) float array per response over its policy tokens."""
        ...


@dataclass
class TokenCredit:
    """Credit over RM tokens (or word spans) of one response."""

    spans: list[tuple[int, int]]
    """(start, end) character span in the response of each RM token."""
    values: np.ndarray
    """(S,) credit of each span."""


class RMTokenExplainer:
    """Base of the sources that attribute over RM tokens and align the result to policy tokens."""

    name = ""

    def __init__(self, reward_model: RewardModel) -> None:
        self.reward_model = reward_model

    def credit(self, batch: ScoredBatch) -> list[TokenCredit]:
        """Credit over the RM tokens of each response."""
        raise NotImplementedError

    def explain(self, batch: ScoredBatch) -> list[np.ndarray]:
        credits = self.credit(batch)
        return [
            align_credit(credit.spans, credit.values, offsets)
            for credit, offsets in zip(credits, batch.response_offsets, strict=True)
        ]


ExplainerFactory = Callable[..., Explainer]
_REGISTRY: dict[str, ExplainerFactory] = {}


def register_explainer(name: str) -> Callable[[ExplainerFactory], ExplainerFactory]:
    """Class decorator: make a source constructible by name with `build_explainer`."""

    def decorate(factory: ExplainerFactory) -> ExplainerFactory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def registered_sources() -> list[str]:
    """Names of every registered source."""
    _load_sources()
    return sorted(_REGISTRY)


def build_explainer(name: str, reward_model: RewardModel, **options: Any) -> Explainer:
    """The source called `name`, built on `reward_model` with its options (e.g. ``max_evals=64``)."""
    _load_sources()
    if name not in _REGISTRY:
        raise ValueError(f"unknown attribution source {name!r}; known: {sorted(_REGISTRY)}")
    try:
        return _REGISTRY[name](reward_model, **options)
    except TypeError as error:
        raise ValueError(f"bad options {sorted(options)} for source {name!r}: {error}") from None


def _load_sources() -> None:
    # The source modules register themselves on import; importing the package imports them all.
    import dense_reward.attribution  # noqa: F401
