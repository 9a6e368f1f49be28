"""`integrated_gradients`: integrated gradients (Sundararajan et al., arXiv 1703.01365) via Captum.

The RM is fed its word embeddings (``inputs_embeds``). For response token t the credit is

    a_t = sum_d (e_t[d] - e'_t[d]) * integral_0^1 dr(e' + alpha (e - e'))/de_t[d] d alpha

where e' is the baseline input: the same sequence with every response token's embedding replaced by
the baseline embedding (`embeddings`: [MASK] by default, pad when the tokenizer has none, or zero)
and the prompt, template and special tokens kept, so they get no credit. Completeness: the credits of
a response sum to r(x, y) - r(baseline), up to the error of the integral's quadrature, which Captum
reports as the convergence delta (kept in ``last_convergence_delta``). Captum's
`IntegratedGradients` does the path, the quadrature (``method``, Gauss-Legendre by default) and the
batching of the ``n_steps`` points.

Cost: ``n_steps`` forwards and backwards per response (batched up to the RM's ``batch_size``
sequences) plus two forwards for the convergence delta.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from dense_reward.attribution.base import RMTokenExplainer, ScoredBatch, TokenCredit, import_detached
from dense_reward.attribution.embeddings import check_baseline, embedded_groups
from dense_reward.reward_model import RewardModel

METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left", "riemann_right")
"""Captum's quadrature rules for the path integral."""


class IntegratedGradientsExplainer(RMTokenExplainer):
    """Integrated gradients of the sequence score over the response tokens' word embeddings.

    Args:
        reward_model: the RM (any model that takes ``inputs_embeds``).
        n_steps: quadrature points on the path from the baseline to the input.
        baseline: ``mask`` (default), ``pad`` or ``zero`` (see `embeddings`).
        method: Captum's quadrature rule, one of `METHODS`.
    """

    name: ClassVar[str] = "integrated_gradients"

    def __init__(
        self, reward_model: RewardModel, n_steps: int = 16, baseline: str = "mask", method: str = "gausslegendre"
    ) -> None:
        super().__init__(reward_model)
        import_detached("captum.attr")  # here, not first inside an explanation (see `import_detached`)
        if n_steps < 1:
            raise ValueError(f"shaping.integrated_gradients.n_steps must be >= 1, got {n_steps}")
        if method not in METHODS:
            raise ValueError(f"shaping.integrated_gradients.method must be one of {list(METHODS)}, got {method!r}")
        self.n_steps = n_steps
        self.baseline = check_baseline(baseline, "shaping.integrated_gradients.baseline")
        self.method = method
        self.last_convergence_delta = np.zeros(0)
        """(B,) Captum's convergence delta of the last batch: sum of credit - (r(x) - r(baseline)) per response."""

    def credit(self, batch: ScoredBatch) -> list[TokenCredit]:
        from captum.attr import IntegratedGradients

        rm = self.reward_model

        def score(embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return rm.forward(None, attention_mask, inputs_embeds=embeds)[0]  # (N,)

        integrated = IntegratedGradients(score)
        items = rm.encode(batch.prompts, batch.responses)
        credits: list[TokenCredit] = [TokenCredit([], np.zeros(0))] * len(items)
        deltas = np.zeros(len(items))
        for group in embedded_groups(rm, items, self.baseline):
            rows = len(group.indices)
            with torch.enable_grad():
                attributions, delta = integrated.attribute(
                    group.embeds,
                    baselines=group.baseline,
                    additional_forward_args=(group.attention_mask,),
                    n_steps=self.n_steps,
                    method=self.method,
                    internal_batch_size=max(rm.spec.batch_size, rows),
                    return_convergence_delta=True,
                )
            per_token = attributions.sum(dim=-1).detach().double().cpu().numpy()  # (B, T)
            deltas[group.indices] = delta.detach().double().cpu().numpy()
            for row, index in enumerate(group.indices):
                item = items[index]
                credits[index] = TokenCredit(
                    item.response_offsets, per_token[row, item.response_start : item.response_end]
                )
        self.last_convergence_delta = deltas
        return credits
