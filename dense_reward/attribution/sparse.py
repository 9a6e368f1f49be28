"""`sparse`: the whole reward on the last response token (vanilla RLHF)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from dense_reward.attribution.base import ScoredBatch
from dense_reward.reward_model import RewardModel


class SparseExplainer:
    """One-hot on the last policy token of each response (an empty array for an empty response)."""

    name: ClassVar[str] = "sparse"
    is_distribution: ClassVar[bool] = True

    def __init__(self, reward_model: RewardModel | None = None) -> None:
        self.reward_model = reward_model

    def explain(self, batch: ScoredBatch) -> list[np.ndarray]:
        return [last_token_one_hot(len(offsets)) for offsets in batch.response_offsets]


def last_token_one_hot(length: int) -> np.ndarray:
    """(length,) zeros with a 1 at the end (empty when length is 0)."""
    values = np.zeros(length)
    if length:
        values[-1] = 1.0
    return values
