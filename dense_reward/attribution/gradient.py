"""`gradient`: gradient x input on the RM's input embeddings, summed over the hidden dimension.

For token t with input embedding e_t the credit is sum_d e_t[d] * dr/de_t[d] (Shrikumar et al.,
arXiv 1605.01713, "gradient * input"). One forward and one backward per batch; the RM weights stay
frozen, only the embeddings fed to it carry gradients.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from dense_reward.attribution.base import RMTokenExplainer, ScoredBatch, TokenCredit
from dense_reward.reward_model import RewardModel


class GradientExplainer(RMTokenExplainer):
    """Gradient x input of the sequence score with respect to each response token's embedding."""

    name: ClassVar[str] = "gradient"

    def __init__(self, reward_model: RewardModel) -> None:
        super().__init__(reward_model)

    def credit(self, batch: ScoredBatch) -> list[TokenCredit]:
        rm = self.reward_model
        embedding = rm.model.get_input_embeddings()
        items = rm.encode(batch.prompts, batch.responses)
        sequences = [item.input_ids for item in items]
        credits: list[TokenCredit] = [TokenCredit([], np.zeros(0))] * len(items)
        for group in rm.chunks(sequences):
            input_ids, attention_mask = rm.pad([sequences[i] for i in group])
            with torch.enable_grad():
                embeds = embedding(input_ids).detach().requires_grad_(True)  # (B, T, H)
                scores, _, _ = rm.forward(None, attention_mask, inputs_embeds=embeds)
                # Rows are independent, so the gradient of the sum is each row's own gradient.
                (grad,) = torch.autograd.grad(scores.sum(), embeds)
            contribution = (grad * embeds).sum(dim=-1).detach().double().cpu().numpy()  # (B, T)
            for row, index in enumerate(group):
                item = items[index]
                credits[index] = TokenCredit(
                    item.response_offsets, contribution[row, item.response_start : item.response_end]
                )
        return credits
