"""`gradient`: first-order token-replacement credit on the RM's input (word) embeddings.

For response token t with embedding e_t and a baseline embedding e_null (`embeddings`: [MASK] by
default) the credit is

    a_t = sum_d dr/de_t[d] * (e_t[d] - e_null[d])

the first-order Taylor estimate of how much the score drops when token t alone is replaced by the
baseline token: one forward and one backward per batch. With ``baseline="zero"`` it is gradient x
input (Shrikumar et al., arXiv 1605.01713). The RM weights stay frozen; only the embeddings fed to it
carry gradients.

On the demo both forms rank tokens against the gold credit (median Spearman -0.25 with [MASK],
-0.30 as gradient x input; docs/benchmarks/fidelity.md): the gradient at the input itself misleads
there. The same gradient integrated along the path from the baseline (`integrated_gradients`) agrees
with the gold credit (+0.26 with 2 points, +0.22 with 16); one point at the path's midpoint gives
about 0. Use `integrated_gradients` for gradient credit; this source is the cheap first-order term.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from dense_reward.attribution.base import RMTokenExplainer, ScoredBatch, TokenCredit
from dense_reward.attribution.embeddings import check_baseline, embedded_groups
from dense_reward.reward_model import RewardModel


class GradientExplainer(RMTokenExplainer):
    """Gradient of the sequence score times (embedding - baseline embedding), per response RM token.

    Args:
        reward_model: the RM (any model that takes ``inputs_embeds``).
        baseline: ``mask`` (default), ``pad`` or ``zero`` (see `embeddings`).
    """

    name: ClassVar[str] = "gradient"

    def __init__(self, reward_model: RewardModel, baseline: str = "mask") -> None:
        super().__init__(reward_model)
        self.baseline = check_baseline(baseline, "shaping.gradient.baseline")

    def credit(self, batch: ScoredBatch) -> list[TokenCredit]:
        rm = self.reward_model
        items = rm.encode(batch.prompts, batch.responses)
        credits: list[TokenCredit] = [TokenCredit([], np.zeros(0))] * len(items)
        for group in embedded_groups(rm, items, self.baseline):
            with torch.enable_grad():
                embeds = group.embeds.detach().requires_grad_(True)  # (B, T, H)
                scores, _, _ = rm.forward(None, group.attention_mask, inputs_embeds=embeds)
                # Rows are independent, so the gradient of the sum is each row's own gradient.
                (grad,) = torch.autograd.grad(scores.sum(), embeds)
            contribution = (grad * (embeds - group.baseline)).sum(dim=-1)  # (B, T)
            contribution = contribution.detach().double().cpu().numpy()
            for row, index in enumerate(group.indices):
                item = items[index]
                credits[index] = TokenCredit(
                    item.response_offsets, contribution[row, item.response_start : item.response_end]
                )
        return credits
