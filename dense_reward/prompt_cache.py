"""Scoring continuations of fixed prompts on a causal reward model, each prompt encoded once.

SHAP and LIME score many masked variants of one response and RED scores every prefix of it; the
prompt part (template, prompt, separator) of all those RM inputs is the same token ids. In a causal
RM a token's hidden states depend only on the tokens before it, so the prompt's key/value states
are the same in every variant: `PromptCache` encodes each distinct prompt once, keeps its
key/value states, and scores every variant as a continuation of them.

A forward of continuations of different prompts stacks their cached states left-padded to the
longest prompt (the padded positions are masked out of attention), appends the continuations
right-padded, and gives each continuation token its true position (prompt length + offset). The
score of a sequence is the `score` head at its last real token, as in `RewardModel.forward`; a
sequence that is the prompt alone takes the score read at the prompt's last token.

Only for RMs whose `score` head is a verified per-position head of a causal model
(`RewardModel.is_causal`); `RewardModel.supports_prompt_cache` also checks, once, that cached and
plain scores agree on a probe (models whose cache cannot be stacked this way, e.g. sliding-window
layers, fail it and keep the plain path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from dense_reward.reward_model import RewardModel

TokenIds = tuple[int, ...]


@dataclass
class _Prompt:
    """One encoded prompt: per layer its keys and values, each (H, P, D), and its (P,) per-position scores."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    position_scores: np.ndarray


class PromptCache:
    """Key/value states of the prompts scored so far; lives as long as one explanation batch.

    Args:
        reward_model: a `RewardModel` with ``is_causal`` True.
    """

    def __init__(self, reward_model: RewardModel) -> None:
        if not reward_model.is_causal:
            raise ValueError("a prompt cache needs a causal reward model with a per-position `score` head")
        self.reward_model = reward_model
        self._prompts: dict[TokenIds, _Prompt] = {}
        self.prompts_encoded = 0
        """Distinct prompts run through the model so far."""

    def __len__(self) -> int:
        return len(self._prompts)

    def score(self, sequences: Sequence[Sequence[int]], prompt_lengths: Sequence[int]) -> np.ndarray:
        """(N,) float64 scores of N sequences whose first ``prompt_lengths[i]`` >= 1 tokens are their prompt."""
        return np.array([scores[-1] for scores in self.position_scores(sequences, prompt_lengths)])

    @torch.inference_mode()
    def position_scores(self, sequences: Sequence[Sequence[int]], prompt_lengths: Sequence[int]) -> list[np.ndarray]:
        """Per-position scores, one (T_i,) float64 array per sequence (entry j: the sequence cut after token j)."""
        if len(sequences) != len(prompt_lengths):
            raise ValueError(f"got {len(sequences)} sequences but {len(prompt_lengths)} prompt lengths")
        if any(length < 1 or length > len(seq) for seq, length in zip(sequences, prompt_lengths, strict=True)):
            raise ValueError("every prompt length must be between 1 and the length of its sequence")
        prompts = [tuple(int(i) for i in seq[:length]) for seq, length in zip(sequences, prompt_lengths, strict=True)]
        self._encode([p for p in dict.fromkeys(prompts) if p not in self._prompts])
        tails = [list(seq[length:]) for seq, length in zip(sequences, prompt_lengths, strict=True)]
        result = [self._prompts[p].position_scores for p in prompts]
        pending = [i for i, tail in enumerate(tails) if tail]
        rm = self.reward_model
        for group in rm.chunks([tails[i] for i in pending]):
            rows = [pending[g] for g in group]
            tail_scores = self._continue([self._prompts[prompts[i]] for i in rows], [tails[i] for i in rows])
            for row, index in enumerate(rows):
                result[index] = np.concatenate([result[index], tail_scores[row, : len(tails[index])]])
        return result

    def _encode(self, prompts: list[TokenIds]) -> None:
        """Run the new `prompts` through the model (right-padded batches) and keep their states."""
        rm = self.reward_model
        for group in rm.chunks(prompts):
            input_ids, attention_mask = rm.pad([prompts[i] for i in group])
            _, position_scores, outputs = rm.forward(input_ids, attention_mask, use_cache=True)
            layers = _layer_states(outputs)
            for row, index in enumerate(group):
                length = len(prompts[index])
                # Slices are cloned so the padded batch tensors can be freed.
                states = [(k[row, :, :length].clone(), v[row, :, :length].clone()) for k, v in layers]
                scores = position_scores[row, :length].cpu().double().numpy()
                self._prompts[prompts[index]] = _Prompt(states, scores)
            self.prompts_encoded += len(group)

    def _continue(self, prompts: list[_Prompt], tails: list[list[int]]) -> np.ndarray:
        """(B, C) per-position scores of the B continuations `tails` of `prompts`, C the longest tail."""
        from transformers import DynamicCache

        rm = self.reward_model
        lengths = [len(p.position_scores) for p in prompts]
        width = max(lengths)
        stacked = []
        for layer in range(len(prompts[0].layers)):
            keys, values = prompts[0].layers[layer]
            shape = (len(prompts), keys.shape[0], width, keys.shape[2])
            k_all, v_all = keys.new_zeros(shape), values.new_zeros((*shape[:3], values.shape[2]))
            for row, prompt in enumerate(prompts):
                k, v = prompt.layers[layer]
                k_all[row, :, width - k.shape[1] :] = k  # left-padded: the prompt ends where the tails begin
                v_all[row, :, width - v.shape[1] :] = v
            stacked.append((k_all, v_all))
        input_ids, tail_mask = rm.pad(tails)  # (B, C)
        prompt_mask = torch.zeros((len(prompts), width), dtype=tail_mask.dtype, device=tail_mask.device)
        for row, length in enumerate(lengths):
            prompt_mask[row, width - length :] = 1
        offsets = torch.arange(input_ids.shape[1], device=input_ids.device)
        position_ids = torch.as_tensor(lengths, device=input_ids.device)[:, None] + offsets  # (B, C)
        _, position_scores, _ = rm.forward(
            input_ids,
            torch.cat([prompt_mask, tail_mask], dim=1),
            cache=DynamicCache(ddp_cache_data=stacked),
            position_ids=position_ids,
            use_cache=True,
        )
        return position_scores[:, -input_ids.shape[1] :].cpu().double().numpy()


def _layer_states(outputs) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (keys, values), each (B, H, T, D), of a forward's returned cache."""
    cache = getattr(outputs, "cache", None)
    if cache is None:
        raise ValueError("the reward model returned no key/value cache")
    from transformers.cache_utils import DynamicLayer

    if any(type(layer) is not DynamicLayer for layer in cache.layers):
        raise ValueError("the reward model's cache has layers other than full-attention ones")
    return [(layer.keys, layer.values) for layer in cache.layers]


def prompt_cache_problem(reward_model: RewardModel) -> str | None:
    """Why `PromptCache` does not reproduce `reward_model`'s plain scores, or None when it does.

    A probe of three sequences with prompts of 2 and 3 tokens (two sharing a prompt, one that is its
    prompt alone), scored both ways and compared with a tolerance relative to the scores (1e-4 in
    float32, a few bf16 units in bf16): a wrong position or mask shows as a difference of the
    scores' own size.
    """
    if not reward_model.is_causal:
        return "it is not a causal reward model with a per-position `score` head"
    special = set(reward_model.tokenizer.all_special_ids)
    a, b, c, d = [i for i in range(len(special) + 4) if i not in special][:4]
    sequences = [[a, b, c, d, d], [a, b, c], [a, b, d, c]]
    lengths = [3, 3, 2]
    try:
        cached = PromptCache(reward_model).score(sequences, lengths)
    except (TypeError, ValueError, AttributeError, RuntimeError) as error:
        return f"{type(error).__name__}: {next(iter(str(error).splitlines()), '')}"
    plain = reward_model.score_ids(sequences)
    # Differently shaped forwards round differently: a few units of the weights' precision (bf16 on CUDA).
    precision = max(1e-4, 4 * torch.finfo(reward_model.model.score.weight.dtype).eps)
    tolerance = precision * (1.0 + float(np.abs(plain).max()))
    if not np.allclose(cached, plain, atol=tolerance, rtol=0.0):
        return f"cached scores {cached.tolist()} differ from plain scores {plain.tolist()}"
    return None
