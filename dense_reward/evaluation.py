"""Held-out evaluation: validation reward (the search objective), gold reward, win rate against a reference.

Responses are decoded the way PPO's reward sees them (special tokens dropped), greedy by default so
`val_reward` of a checkpoint is a number, not a sample.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any, Protocol

import numpy as np
import torch

from dense_reward.config import EvaluationConfig, PPOConfig
from dense_reward.errors import UserError
from dense_reward.ppo.rollout import generate

GoldScorer = Callable[[list[str]], np.ndarray]
"""Maps B response texts to (B,) gold rewards (e.g. a rule-based or human-calibrated scorer)."""


class Scorer(Protocol):
    """Anything that scores (prompt, response) pairs like `dense_reward.reward_model.RewardModel`."""

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor: ...


class EvaluationError(UserError, ValueError):
    """A scorer returned the wrong number of values or a non-finite one."""


def generate_texts(
    policy, tokenizer, prompts: Sequence[str], evaluation: EvaluationConfig, decoding: PPOConfig, seed: int = 0
) -> list[str]:
    """One decoded response per prompt, in batches of `evaluation.batch_size`.

    Greedy when `evaluation.greedy`, else sampled at `decoding.temperature` / `decoding.top_p` from torch's
    RNG seeded by `seed` (and restored afterwards, so evaluating never moves a training run's RNG); at most
    `decoding.max_new_tokens` tokens, cut at the first EOS.
    """
    was_training = policy.training
    policy.eval()
    device = next(policy.parameters()).device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    texts: list[str] = []
    size = evaluation.batch_size
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        try:
            for start in range(0, len(prompts), size):
                with autocast:
                    rollout = generate(
                        policy,
                        tokenizer,
                        prompts[start : start + size],
                        max_new_tokens=decoding.max_new_tokens,
                        temperature=decoding.temperature,
                        top_p=decoding.top_p,
                        greedy=evaluation.greedy,
                    )
                texts += tokenizer.batch_decode(
                    rollout.token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
                )
        finally:
            policy.train(was_training)
    return texts


def _checked(values: Any, size: int, what: str) -> np.ndarray:
    values = np.asarray(
        values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64
    )
    if values.shape != (size,):
        raise EvaluationError(f"{what}: expected {size} scores (one per response), got shape {values.shape}")
    bad = np.flatnonzero(~np.isfinite(values)).tolist()
    if bad:
        raise EvaluationError(
            f"{what}: scores of response(s) {bad[:5]} are not finite: {values[bad[:5]].tolist()}"
        )
    return values


def evaluate(
    policy,
    tokenizer,
    prompts: Sequence[str],
    reward_model: Scorer,
    evaluation: EvaluationConfig,
    decoding: PPOConfig,
    gold_scorer: GoldScorer | None = None,
    raw_prompts: Mapping[str, str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Score the policy's responses to held-out prompts.

    Args:
        policy: the causal LM being evaluated.
        tokenizer: its tokenizer.
        prompts: validation prompts (already formatted); at most `evaluation.max_prompts` are used.
        reward_model: scores (prompt, response) pairs, `.score(prompts, responses) -> (B,)`.
        evaluation: the `evaluation` section.
        decoding: the decoding knobs of the `ppo` section (`max_new_tokens`, `temperature`, `top_p`).
        gold_scorer: optional `list[str] -> (B,)` gold reward of the response texts.
        raw_prompts: formatted prompt -> the raw text the RM reads (see `DenseReward`).
        seed: seed of sampled (non-greedy) evaluation; every trial of a sweep uses the same one.

    Returns:
        `val_reward` (mean RM score), `val_reward_sem` (its standard error over the prompts, std with
        ddof=1 over sqrt(n); 0 for one prompt), `val_reward_std`, `response_chars` (mean length in characters),
        `num_prompts`, `gold_reward` (mean, or None without a gold scorer), `scores` (per prompt), and
        `samples`: the first `evaluation.heatmap_samples` (prompt, response) pairs.
    """
    limit = evaluation.max_prompts
    prompts = list(prompts[:limit] if limit else prompts)
    if not prompts:
        raise EvaluationError(
            "evaluate: no validation prompts; check data.validation_fraction and evaluation.max_prompts"
        )
    responses = generate_texts(policy, tokenizer, prompts, evaluation, decoding, seed)
    rm_prompts = [(raw_prompts or {}).get(p, p) for p in prompts]
    scores = _checked(reward_model.score(rm_prompts, responses), len(prompts), "reward model")
    gold_reward = None
    if gold_scorer is not None:
        gold_reward = float(_checked(gold_scorer(responses), len(prompts), "gold scorer").mean())
    return {
        "val_reward": float(scores.mean()),
        "val_reward_sem": float(scores.std(ddof=1) / np.sqrt(scores.size)) if scores.size > 1 else 0.0,
        "val_reward_std": float(scores.std()),
        "response_chars": float(np.mean([len(r) for r in responses])),
        "num_prompts": len(prompts),
        "gold_reward": gold_reward,
        "scores": scores.tolist(),
        "samples": list(zip(prompts, responses, strict=True))[: evaluation.heatmap_samples],
    }


def win_rate(
    policy,
    reference,
    tokenizer,
    prompts: Sequence[str],
    reward_model: Scorer,
    evaluation: EvaluationConfig,
    decoding: PPOConfig,
) -> float:
    """Share of prompts where the RM scores the policy's response above the reference's (ties count 1/2).

    `reference=None` compares against the policy with its LoRA adapters disabled.
    """
    limit = evaluation.max_prompts
    prompts = list(prompts[:limit] if limit else prompts)
    if not prompts:
        raise EvaluationError("win_rate: no prompts to compare on")
    policy_texts = generate_texts(policy, tokenizer, prompts, evaluation, decoding)
    if reference is None:
        if not hasattr(policy, "disable_adapter"):
            raise EvaluationError(
                "win_rate: reference=None needs a peft policy (its adapters are switched off)"
            )
        with policy.disable_adapter():
            reference_texts = generate_texts(policy, tokenizer, prompts, evaluation, decoding)
    else:
        reference_texts = generate_texts(reference, tokenizer, prompts, evaluation, decoding)
    policy_scores = _checked(reward_model.score(prompts, policy_texts), len(prompts), "reward model")
    reference_scores = _checked(reward_model.score(prompts, reference_texts), len(prompts), "reward model")
    wins = (policy_scores > reference_scores).astype(np.float64) + 0.5 * (policy_scores == reference_scores)
    return float(wins.mean())


__all__ = [
    "EvaluationError",
    "GoldScorer",
    "evaluate",
    "generate_texts",
    "win_rate",
]
