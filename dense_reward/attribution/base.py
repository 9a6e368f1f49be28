"""The explainer contract: what every attribution source takes and returns, and the facts it carries.

Every source turns a scored batch into one float array per response over the response's **policy**
tokens. Sources that work on RM tokens return `TokenCredit` (RM-token spans and their credit)
from `credit`, and `RMTokenExplainer.explain` moves it onto policy tokens with `align.align_credit`.
The registry of sources by name is `dense_reward.attribution.registry.EXPLAINERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

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
    """A per-token credit source, constructed as ``cls(reward_model, **options)``."""

    name: ClassVar[str]
    """The source name, as in ``shaping.sources``."""
    is_distribution: ClassVar[bool]
    """The credit is already a distribution over the tokens (>= 0, sums to 1): shaping only renormalises it."""

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

    name: ClassVar[str] = ""
    is_distribution: ClassVar[bool] = False

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
