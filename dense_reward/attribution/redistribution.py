"""`redistribution`: RED prefix differences (Li et al., arXiv 2411.08302).

The credit of response token t is r(x, y_<=t) - r(x, y_<t): how much the RM score moves when the
token is appended. A causal RM with a per-position score head gives every prefix score in one
forward; an encoder RM needs one forward per prefix, all of a batch's prefixes scored together.
Prefixes are cut at RM tokens (token ids, not re-tokenised text), so the differences telescope to
r(x, y) - r(x, empty response). When several responses of a batch share a prompt (RM token ids up
to the response), a causal RM encodes that prompt once and reads the responses as its
continuations (`dense_reward.prompt_cache`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from dense_reward.attribution.base import RMTokenExplainer, ScoredBatch, TokenCredit
from dense_reward.prompt_cache import PromptCache
from dense_reward.reward_model import RewardModel, RMInput


class RedistributionExplainer(RMTokenExplainer):
    """Score differences of consecutive response prefixes, per RM token.

    Args:
        reward_model: the RM.
        prompt_cache: on a causal RM, encode a prompt shared by several responses once.
    """

    name: ClassVar[str] = "redistribution"

    def __init__(self, reward_model: RewardModel, prompt_cache: bool = True) -> None:
        super().__init__(reward_model)
        self.prompt_cache = prompt_cache

    def _position_scores(self, items: list[RMInput]) -> list[np.ndarray]:
        """Per-position scores of a causal RM, each shared prompt encoded once when the cache is on."""
        rm = self.reward_model
        prompts = [tuple(item.input_ids[: item.response_start]) for item in items]
        shared = len(set(prompts)) < len(prompts) and all(item.response_start > 0 for item in items)
        if self.prompt_cache and shared and rm.supports_prompt_cache:
            return PromptCache(rm).position_scores(
                [item.input_ids for item in items], [item.response_start for item in items]
            )
        return rm.position_scores(items)

    def credit(self, batch: ScoredBatch) -> list[TokenCredit]:
        rm = self.reward_model
        items = rm.encode(batch.prompts, batch.responses)
        if rm.is_causal:
            prefix_scores = []
            for item, per_position in zip(items, self._position_scores(items), strict=True):
                # The empty-response score is the one read at the last prompt token.
                empty = per_position[item.response_start - 1] if item.response_start > 0 else 0.0
                prefix_scores.append(np.concatenate([[empty], per_position[item.response_start : item.response_end]]))
        else:
            prefixes = [item.with_response_prefix(t) for item in items for t in range(item.response_length + 1)]
            unique = {tuple(p): None for p in prefixes}
            scored = dict(zip(unique, rm.score_ids([list(p) for p in unique]), strict=True))
            flat = np.array([scored[tuple(p)] for p in prefixes])
            bounds = np.cumsum([0] + [item.response_length + 1 for item in items])
            prefix_scores = [flat[bounds[i] : bounds[i + 1]] for i in range(len(items))]
        return [
            TokenCredit(item.response_offsets, np.diff(scores))
            for item, scores in zip(items, prefix_scores, strict=True)
        ]
