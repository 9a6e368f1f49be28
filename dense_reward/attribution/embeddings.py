"""Reward-model input embeddings of a batch and the baseline integrated gradients start from.

`integrated_gradients` feeds the RM word embeddings directly (``inputs_embeds``) and attributes the
score to the response tokens' embeddings. It measures each response token against a
*baseline* embedding: the response tokens are replaced by it while the prompt, the template and the
special tokens ([CLS], [SEP], BOS) keep their own, so only response tokens can carry credit.

Baselines (``shaping.<source>.baseline``):

- ``mask``: the RM tokenizer's mask token ([MASK]) embedding, the token an encoder was pre-trained
  to read as "a word is missing here"; the pad token's when the tokenizer has no mask token;
- ``pad``: the pad token's embedding;
- ``zero``: the zero vector.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from dense_reward.reward_model import RewardModel, RMInput

Baseline = Literal["mask", "pad", "zero"]
BASELINES: tuple[str, ...] = ("mask", "pad", "zero")


def check_baseline(baseline: str, field: str) -> str:
    """`baseline` after checking it is one of `BASELINES`; the error names the config `field`."""
    if baseline not in BASELINES:
        raise ValueError(f"{field} must be one of {list(BASELINES)}, got {baseline!r}")
    return baseline


def baseline_token_id(reward_model: RewardModel, baseline: str) -> int | None:
    """The RM token whose embedding stands in for response tokens (None for the zero vector)."""
    tokenizer = reward_model.tokenizer
    if baseline == "zero":
        return None
    if baseline == "mask" and tokenizer.mask_token_id is not None:
        return int(tokenizer.mask_token_id)
    return int(tokenizer.pad_token_id)


@dataclass
class EmbeddedGroup:
    """One RM forward batch as embeddings, with its baseline."""

    indices: list[int]
    """Positions in the explained batch of the B rows."""
    embeds: torch.Tensor
    """(B, T, H) word embeddings of the right-padded inputs."""
    baseline: torch.Tensor
    """(B, T, H) `embeds` with every response token's embedding replaced by the baseline's."""
    attention_mask: torch.Tensor
    """(B, T) 1 on real tokens."""


def embedded_groups(reward_model: RewardModel, items: Sequence[RMInput], baseline: str) -> Iterator[EmbeddedGroup]:
    """The encoded pairs `items` in RM forward batches (`RewardModel.chunks`), embedded, with their baseline."""
    embedding = reward_model.model.get_input_embeddings()
    token = baseline_token_id(reward_model, baseline)
    sequences = [item.input_ids for item in items]
    for group in reward_model.chunks(sequences):
        input_ids, attention_mask = reward_model.pad([sequences[i] for i in group])
        with torch.no_grad():
            embeds = embedding(input_ids)  # (B, T, H)
            fill = torch.zeros_like(embeds[0, 0]) if token is None else embedding.weight[token].to(embeds.dtype)
            reference = embeds.clone()
            for row, index in enumerate(group):
                item = items[index]
                reference[row, item.response_start : item.response_end] = fill
        yield EmbeddedGroup(list(group), embeds, reference, attention_mask)
