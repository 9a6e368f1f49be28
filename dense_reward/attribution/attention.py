"""`attention`: attention-based credit (ABC; Chan et al., "Dense Reward for Free in RLHF", arXiv 2402.00782).

The credit of a response token is the RM's last-layer attention from the token the score is read
at, averaged over heads, renormalised over the response tokens. A causal RM reads its score at
the final token (the paper's setting); an encoder classifier such as BERT reads it at the first
token ([CLS], through its pooler), so that row is used there. The RM must be loaded with eager
attention: fused kernels (sdpa, flash) return no attention weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
import torch

from dense_reward.attribution.base import RMTokenExplainer, ScoredBatch, TokenCredit
from dense_reward.errors import UserError
from dense_reward.reward_model import RewardModel


class AttentionUnavailableError(UserError):
    """The reward model returns no attention weights."""


class AttentionExplainer(RMTokenExplainer):
    """Last-layer, head-averaged attention row of the scoring token over the response tokens.

    Args:
        reward_model: the RM (eager attention).
        query: which token's row is read: ``auto`` (final token for a causal RM, first token for an
            encoder), ``final`` or ``first``.
    """

    name: ClassVar[str] = "attention"
    is_distribution: ClassVar[bool] = True

    def __init__(self, reward_model: RewardModel, query: Literal["auto", "final", "first"] = "auto") -> None:
        super().__init__(reward_model)
        if query not in ("auto", "final", "first"):
            raise ValueError(f"attention query must be auto, final or first, got {query!r}")
        self.query = query

    def credit(self, batch: ScoredBatch) -> list[TokenCredit]:
        return self.score_and_credit(batch.prompts, batch.responses)[1]

    @torch.inference_mode()
    def score_and_credit(
        self, prompts: Sequence[str], responses: Sequence[str]
    ) -> tuple[np.ndarray, list[TokenCredit]]:
        """(B,) sequence scores and the attention credit, from the same forwards (ABC costs nothing extra)."""
        rm = self.reward_model
        items = rm.encode(prompts, responses)
        sequences = [item.input_ids for item in items]
        use_final = self.query == "final" or (self.query == "auto" and rm.is_causal)
        scores = np.zeros(len(items))
        credits: list[TokenCredit] = [TokenCredit([], np.zeros(0))] * len(items)
        for group in rm.chunks(sequences):
            input_ids, attention_mask = rm.pad([sequences[i] for i in group])
            batch_scores, _, outputs = rm.forward(input_ids, attention_mask, output_attentions=True)
            scores[group] = batch_scores.cpu().double().numpy()
            attentions = getattr(outputs, "attentions", None)
            if not attentions or attentions[-1] is None:
                raise AttentionUnavailableError(
                    f"source 'attention': the reward model {rm.spec.path!r} returned no attention weights; "
                    "load it with attn_implementation='eager' or drop 'attention' from shaping.sources"
                )
            last_layer = attentions[-1].float().mean(dim=1)  # (B, T, T), mean over heads
            for row, index in enumerate(group):
                item = items[index]
                query = len(item.input_ids) - 1 if use_final else 0
                weights = last_layer[row, query, item.response_start : item.response_end].double().cpu().numpy()
                total = weights.sum()
                credits[index] = TokenCredit(item.response_offsets, weights / total if total > 0 else weights)
        return scores, credits
