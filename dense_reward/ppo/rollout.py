"""Rollout: sample responses with left padding, then score every response token in one forward pass.

A batch is laid out as `[query | response]`: queries are left-padded to a common length `Tq`, responses
right-padded to `Tr`. A response is the generated tokens up to and including the first stop token;
everything after it is masked out. The stop tokens are the tokenizer's EOS and every EOS id in the
policy's generation config (chat models often end a turn with a token of their own, e.g. ``<|im_end|>``);
any of them counts as EOS. Log-probabilities are taken from logits divided by the sampling temperature, as
the sampler saw them (Huang et al., "The N+ Implementation Details of RLHF with PPO", arXiv 2403.17031),
with position ids that skip the left padding, so a prompt gets the same log-probabilities whatever else
shares its batch.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from transformers import GenerationConfig

from dense_reward.errors import UserError
from dense_reward.ppo.losses import entropy_from_logits


class RewardError(UserError, ValueError):
    """A reward callable returned something PPO cannot train on (wrong length, NaN, wrong batch size)."""


@dataclass
class Rollout:
    """One batch of sampled responses and everything PPO needs from the rollout phase."""

    query_ids: torch.Tensor  # (B, Tq) left-padded prompt tokens
    query_mask: torch.Tensor  # (B, Tq) 1 on prompt tokens, 0 on left padding
    response_ids: torch.Tensor  # (B, Tr) generated tokens, padding after the first EOS
    response_mask: torch.Tensor  # (B, Tr) float, 1 up to and including the first EOS
    logprobs: torch.Tensor | None = None  # (B, Tr) policy log-probs of the sampled tokens
    ref_logprobs: torch.Tensor | None = None  # (B, Tr) reference log-probs of the same tokens
    values: torch.Tensor | None = None  # (B, Tr) V of the state before each token
    entropy: torch.Tensor | None = None  # (B, Tr) policy entropy at each position
    stop_token_ids: tuple[int, ...] = ()  # ids that ended a response (see `stop_token_ids`)

    @property
    def lengths(self) -> list[int]:
        """Number of response tokens (EOS included) per response."""
        return [int(n) for n in self.response_mask.sum(dim=1).tolist()]

    @property
    def token_ids(self) -> list[list[int]]:
        """Response tokens per response, up to and including the first EOS (the reward contract)."""
        return [row[:n] for row, n in zip(self.response_ids.tolist(), self.lengths, strict=True)]

    def ended_with_eos(self, eos_token_ids: int | Collection[int] | None = None) -> torch.Tensor:
        """`(B,)` bool: the response stopped on an EOS (any of `eos_token_ids`, by default the stop
        tokens it was generated with) rather than at the length cap."""
        stops = self.stop_token_ids if eos_token_ids is None else as_id_list(eos_token_ids)
        if not stops:
            raise ValueError("ended_with_eos: the rollout has no stop token ids; pass eos_token_ids")
        last = (self.response_mask.sum(dim=1).long() - 1).clamp(min=0)  # (B,)
        has_tokens = self.response_mask.sum(dim=1) > 0
        final = self.response_ids.gather(1, last[:, None]).squeeze(1)  # (B,)
        return has_tokens & torch.isin(final, torch.tensor(list(stops), device=final.device))


def as_id_list(ids: int | Collection[int] | None) -> list[int]:
    """Token ids as a list: None -> [], an int -> [it] (as `eos_token_id` fields hold either)."""
    if ids is None:
        return []
    if isinstance(ids, int):
        return [ids]
    return [int(i) for i in ids]


def stop_token_ids(policy, tokenizer) -> tuple[int, ...]:
    """The ids that end a response: the tokenizer's EOS and every EOS of the policy's generation config."""
    generation_config = getattr(policy, "generation_config", None)
    ids = as_id_list(tokenizer.eos_token_id) + as_id_list(getattr(generation_config, "eos_token_id", None))
    return tuple(dict.fromkeys(ids))


def tokenize_prompts(
    tokenizer, prompts: Sequence[str], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded `(B, Tq)` prompt ids and mask; raises on an empty prompt (nothing to condition on)."""
    if not prompts:
        raise ValueError("prompts: need at least one prompt")
    encoded = tokenizer(
        list(prompts), padding=True, padding_side="left", return_tensors="pt", add_special_tokens=False
    )
    empty = (encoded["attention_mask"].sum(dim=1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"prompts: prompt(s) at index {empty} have no tokens; drop empty prompts")
    return encoded["input_ids"].to(device), encoded["attention_mask"].to(device)


def mask_after_eos(response_ids: torch.Tensor, eos_token_ids: int | Collection[int]) -> torch.Tensor:
    """`(B, Tr)` float mask: 1 up to and including the first EOS (any of `eos_token_ids`) of a row, 0 after."""
    stops = torch.tensor(as_id_list(eos_token_ids), dtype=response_ids.dtype, device=response_ids.device)
    is_eos = torch.isin(response_ids, stops).long()  # (B, Tr)
    # Tokens strictly after the first EOS have at least one EOS before them.
    eos_before = is_eos.cumsum(dim=1) - is_eos
    return (eos_before == 0).float()


@torch.no_grad()
def generate(
    policy,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy: bool = False,
    policy_scores: bool = False,
    value_head=None,
) -> Rollout:
    """Sample one response per prompt (or decode greedily); returns a `Rollout`.

    Generation stops on any of `stop_token_ids(policy, tokenizer)`. With `policy_scores`, the rollout's
    `logprobs` and `entropy` `(B, Tr)` are filled from the logits the sampler drew from (divided by
    `temperature`), so no second policy forward is needed; in full precision these equal what a forward
    pass over `[query | response]` gives, up to float rounding. Without it the rollout has no scores.
    With `policy_scores` and a `value_head` (a value head on the policy), `values` `(B, Tr)` are read off
    the last-layer hidden states the sampler computed at the same positions, also up to float rounding.
    """
    device = next(policy.parameters()).device
    query_ids, query_mask = tokenize_prompts(tokenizer, prompts, device)
    stops = stop_token_ids(policy, tokenizer)
    generation_config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=not greedy,
        temperature=temperature if not greedy else None,
        top_k=0 if not greedy else None,
        top_p=top_p if not greedy else None,
        eos_token_id=list(stops) or None,
        pad_token_id=tokenizer.pad_token_id,
        return_dict_in_generate=policy_scores,
        output_logits=policy_scores,
        output_hidden_states=policy_scores and value_head is not None,
    )
    output = policy.generate(
        input_ids=query_ids, attention_mask=query_mask, generation_config=generation_config
    )
    sequences = output.sequences if policy_scores else output  # (B, Tq + Tr)
    response_ids = sequences[:, query_ids.shape[1] :]
    response_mask = mask_after_eos(response_ids, stops)
    # Whatever follows the first EOS is replaced by padding so it can never leak into a forward pass.
    response_ids = torch.where(response_mask.bool(), response_ids, tokenizer.pad_token_id)
    rollout = Rollout(query_ids, query_mask, response_ids, response_mask, stop_token_ids=stops)
    if policy_scores:
        logits = torch.stack(output.logits, dim=1).float()  # (B, Tr, V), raw: before temperature
        if value_head is not None:
            # Step i's last-layer hidden state at its last input position is the state that predicts
            # response token i: the prompt's last token for i = 0, response token i - 1 after that.
            hidden = torch.stack([layers[-1][:, -1] for layers in output.hidden_states], dim=1)  # (B, Tr, H)
            rollout.values = value_head(hidden).float() * response_mask
            del hidden
        del output
        if temperature != 1.0:
            logits /= temperature
        rollout.logprobs = token_logprobs(logits, response_ids) * response_mask
        rollout.entropy = entropy_from_logits(logits) * response_mask
    return rollout


def sequence_inputs(
    query_ids: torch.Tensor, query_mask: torch.Tensor, response_ids: torch.Tensor
) -> dict[str, torch.Tensor]:
    """`input_ids`, `attention_mask`, `position_ids` (each `(B, Tq + Tr)`) for `[query | response]`.

    Position ids count only real tokens, as generation does, so left padding never shifts a position.
    Response positions are all attended to: tokens after EOS sit to the right of every real token and a
    causal model never lets them change what comes before.
    """
    input_ids = torch.cat([query_ids, response_ids], dim=1)
    attention_mask = torch.cat([query_mask, torch.ones_like(response_ids)], dim=1)
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}


def response_logits(
    model,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    response_ids: torch.Tensor,
    temperature: float,
    output_hidden_states: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Temperature-scaled logits `(B, Tr, V)` that predict each response token, and optionally the
    last-layer hidden states `(B, Tr, H)` at the same positions (for a value head on the policy)."""
    response_length = response_ids.shape[1]
    # The logit at position p predicts token p + 1, so the last response token is never an input: the
    # last `response_length` positions of [query | response[:-1]] predict the response.
    output = model(
        **sequence_inputs(query_ids, query_mask, response_ids[:, :-1]),
        use_cache=False,
        output_hidden_states=output_hidden_states,
        logits_to_keep=response_length,
    )
    logits = output.logits
    if temperature != 1.0:
        logits = logits / temperature
    hidden = output.hidden_states[-1][:, -response_length:] if output_hidden_states else None
    return logits, hidden


def critic_values(
    critic, query_ids: torch.Tensor, query_mask: torch.Tensor, response_ids: torch.Tensor
) -> torch.Tensor:
    """A critic's values `(B, Tr)` at the positions that predict each response token (as `response_logits`)."""
    values = critic(**sequence_inputs(query_ids, query_mask, response_ids[:, :-1]))  # (B, Tq + Tr - 1)
    return values[:, -response_ids.shape[1] :]


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probabilities `(B, T)` of `tokens` `(B, T)` under `logits` `(B, T, V)`."""
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


@torch.no_grad()
def score_tokens(
    rollout: Rollout,
    policy,
    temperature: float,
    reference=None,
    critic=None,
    value_head=None,
    chunk_size: int | None = None,
    autocast: AbstractContextManager | None = None,
) -> Rollout:
    """Fill `logprobs`, `ref_logprobs`, `values` and `entropy` of `rollout`, in chunks of `chunk_size`.

    `reference=None` means the policy is a peft model whose reference is itself with adapters disabled.
    Exactly one of `critic` (a separate model) and `value_head` (on the policy's hidden states) is given.
    A rollout whose `logprobs` and `entropy` (and, with a value head, `values`) came with it
    (`generate(..., policy_scores=True)`) keeps them and skips the policy forward.
    """
    size = rollout.query_ids.shape[0]
    chunk_size = chunk_size or size
    policy_forward = (
        rollout.logprobs is None
        or rollout.entropy is None
        or (value_head is not None and rollout.values is None)
    )
    values_here = value_head is None or policy_forward
    names = (
        ["ref_logprobs"]
        + (["values"] if values_here else [])
        + (["logprobs", "entropy"] if policy_forward else [])
    )
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for start in range(0, size, chunk_size):
        rows = slice(start, start + chunk_size)
        query_ids, query_mask = rollout.query_ids[rows], rollout.query_mask[rows]
        response_ids = rollout.response_ids[rows]
        with autocast or nullcontext():
            if policy_forward:
                logits, hidden = response_logits(
                    policy,
                    query_ids,
                    query_mask,
                    response_ids,
                    temperature,
                    output_hidden_states=value_head is not None,
                )
                parts["logprobs"].append(token_logprobs(logits.float(), response_ids))
                parts["entropy"].append(entropy_from_logits(logits.float()))
                del logits
            if reference is None:
                with policy.disable_adapter():
                    ref_logits, _ = response_logits(policy, query_ids, query_mask, response_ids, temperature)
            else:
                ref_logits, _ = response_logits(reference, query_ids, query_mask, response_ids, temperature)
            parts["ref_logprobs"].append(token_logprobs(ref_logits.float(), response_ids))
            del ref_logits
            if not values_here:
                continue
            if value_head is not None:
                values = value_head(hidden)
            else:
                values = critic_values(critic, query_ids, query_mask, response_ids)
            parts["values"].append(values.float())
    for name, chunks in parts.items():
        setattr(rollout, name, torch.cat(chunks) * rollout.response_mask)
    return rollout


def dense_reward_tensor(
    dense: Sequence[np.ndarray], scores: np.ndarray, lengths: Sequence[int], response_mask: torch.Tensor
) -> torch.Tensor:
    """Check a reward callable's output against the rollout and pad it into a `(B, Tr)` tensor.

    Raises `RewardError` naming the response and the problem when the batch size, a length or a value is
    wrong, so nothing is updated on a broken reward.
    """
    batch_size = len(lengths)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (batch_size,):
        raise RewardError(
            f"reward: scores must have shape ({batch_size},) (one per response), got {scores.shape}"
        )
    bad_scores = np.flatnonzero(~np.isfinite(scores)).tolist()
    if bad_scores:
        raise RewardError(
            f"reward: scores of response(s) {bad_scores} are not finite: {scores[bad_scores].tolist()}"
        )
    if len(dense) != batch_size:
        raise RewardError(f"reward: dense has {len(dense)} arrays for {batch_size} responses")
    rewards = torch.zeros_like(response_mask)
    for i, (row, length) in enumerate(zip(dense, lengths, strict=True)):
        row = np.asarray(row, dtype=np.float64)
        if row.ndim != 1 or row.shape[0] != length:
            raise RewardError(
                f"reward: dense[{i}] must hold one float per response token ({length}, EOS included), "
                f"got shape {row.shape}"
            )
        bad = np.flatnonzero(~np.isfinite(row)).tolist()
        if bad:
            raise RewardError(f"reward: dense[{i}] is not finite at token(s) {bad}: {row[bad].tolist()}")
        rewards[i, :length] = torch.as_tensor(row, dtype=rewards.dtype)
    return rewards
