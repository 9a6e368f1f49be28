"""Checks of a reward model at load: its position limit and how its score can be read.

Both guard against faults that otherwise surface mid-forward: a ``models.reward.max_length``
beyond the model's position embeddings (an IndexError deep in a trial), and a `score` head guessed
to be a causal per-position head when it is not (e.g. an encoder whose head is named `score`).
"""

from __future__ import annotations

import warnings

import torch

from dense_reward.config import RewardModelSpec
from dense_reward.errors import ConfigWarning

UNLIMITED_LENGTH = 10**7
"""Tokenizers without a length limit report a huge ``model_max_length`` (about 1e30); anything above this is none."""


def position_limit(config: object, tokenizer) -> int | None:
    """The longest input a model takes: its config's ``max_position_embeddings`` (GPT-2's ``n_positions``)
    and the tokenizer's ``model_max_length``, whichever is smaller; None when neither says.

    Needs only the config (e.g. ``AutoConfig.from_pretrained``), so a check before loading weights can use it.
    """
    limits = []
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    # RoBERTa-style models have two positions fewer than max_position_embeddings; their tokenizer says so.
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < UNLIMITED_LENGTH:
        limits.append(tokenizer_limit)
    return min(limits) if limits else None


def capped_max_length(model: torch.nn.Module, tokenizer, spec: RewardModelSpec) -> int:
    """``spec.max_length``, or the model's position limit with a warning when the spec asks for more.

    Longer inputs would index past the position embeddings in the middle of a forward.
    """
    limit = position_limit(getattr(model, "config", None), tokenizer)
    if limit is None or spec.max_length <= limit:
        return spec.max_length
    warnings.warn(
        f"models.reward.max_length={spec.max_length} is above the {limit} positions {spec.path!r} takes; "
        f"RM inputs are cut to {limit} tokens",
        ConfigWarning,
        stacklevel=3,
    )
    return limit


def causal_head_problem(model: torch.nn.Module, tokenizer) -> str | None:
    """Why `model` is not a causal RM whose `score` head can be read at every position, or None when it is.

    A probe of two 3-token inputs that differ only in their last token: the head must be a linear
    layer applied at every position (output (B, T, 1)); its outputs at the first two positions must
    not see the last token (causal attention); and the head at the last position must be the
    model's own sequence score.
    """
    head = getattr(model, "score", None)
    if not isinstance(head, torch.nn.Linear) or head.out_features != 1:
        return "it has no `score` linear head with one output"
    special = set(tokenizer.all_special_ids)
    a, b, c = [i for i in range(len(special) + 3) if i not in special][:3]
    device = next(model.parameters()).device
    input_ids = torch.tensor([[a, b, b], [a, b, c]], device=device)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.inference_mode():
            logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits.float()
    finally:
        hook.remove()
    per_position = captured[-1].float() if captured else None
    if per_position is None or per_position.shape != (2, 3, 1):
        return "its `score` head is not applied at every position"
    tolerance = 1e-3 * (1.0 + float(per_position.abs().max()))
    if not torch.allclose(per_position[0, :2], per_position[1, :2], atol=tolerance, rtol=0.0):
        return "its per-position scores see later tokens (not a causal model)"
    if logits.shape != (2, 1) or not torch.allclose(per_position[:, -1], logits, atol=tolerance, rtol=0.0):
        return "its `score` head at the last token is not the model's sequence score"
    return None
