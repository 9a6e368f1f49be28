"""One fused kernel in place of an activation that Hugging Face models spell out in elementwise ops.

GPT-2-family models (``activation_function: gelu_new``: GPT-2, GPT-J, CodeGen, Phi-1/2, ...) compute the
tanh approximation of GELU (Hendrycks & Gimpel, arXiv 1606.08415)

    gelu(x) = 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))

as seven separate tensor ops, each saving its input for the backward pass. PyTorch computes the very same
function in one kernel (`torch.nn.functional.gelu(x, approximate="tanh")`, documented with this formula at
https://pytorch.org/docs/stable/generated/torch.nn.GELU.html), forward and backward; the two agree up to
float rounding. PPO runs the policy, reference and critic many times per step, so the trainer swaps the
module in (it has no weights: state dicts and checkpoints are unchanged).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import NewGELUActivation


class TanhGELU(nn.Module):
    """GELU, tanh approximation, as one kernel: `(*)` -> `(*)`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(input, approximate="tanh")


def fuse_gelu(model: nn.Module) -> int:
    """Replace every `NewGELUActivation` inside `model` by `TanhGELU`, in place; returns how many."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is NewGELUActivation:
                setattr(parent, name, TanhGELU())
                replaced += 1
    return replaced
