"""PPO arithmetic on padded per-token tensors: KL estimators, whitening, GAE, clipped losses.

Every tensor here is `(B, T)` over response tokens, with a float `mask` of the same shape that is 1 on
the tokens of the response (up to and including the first EOS) and 0 after it. Masked positions never
contribute to a mean, a variance or a return.

Formulas follow "The N+ Implementation Details of RLHF with PPO" (Huang et al., arXiv 2403.17031,
https://arxiv.org/abs/2403.17031), GAE (Schulman et al., arXiv 1506.02438) and the KL estimators of
http://joschu.net/blog/kl-approx.html.
"""

from __future__ import annotations

from typing import Literal

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over the positions where `mask` is 1; a 0-dim tensor."""
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of `values` over the masked positions (Bessel-corrected by default); a 0-dim tensor."""
    mean = masked_mean(values, mask)
    count = mask.sum()
    variance = masked_mean((values - mean) ** 2, mask)
    if unbiased and count > 1:
        variance = variance * count / (count - 1)
    return variance


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Scale `values` to unit variance over the masked positions (and zero mean when `shift_mean`).

    Rewards are whitened without the shift (the sign of a reward carries meaning); advantages with it.
    Masked-out positions come back as 0.
    """
    mean, variance = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(variance + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def kl_per_token(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: Literal["k1", "k3"] = "k1"
) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the sampled tokens' log-probabilities.

    k1 = log p - log q (unbiased, can be negative); k3 = (q/p - 1) - log(q/p) (unbiased, always >= 0).

    Args:
        logprobs: `(B, T)` log p of the sampled tokens under the policy.
        ref_logprobs: `(B, T)` log q of the same tokens under the reference.
    """
    log_ratio = logprobs - ref_logprobs  # (B, T) log p/q
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"ppo.kl_estimator must be 'k1' or 'k3', got {estimator!r}")


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each response; the episode ends at its last masked token.

        delta_t = r_t + gamma * V_{t+1} - V_t          (V after the last token is 0)
        A_t     = delta_t + gamma * lam * A_{t+1}
        R_t     = A_t + V_t                             (the value target)

    Args:
        rewards: `(B, T)` per-token rewards.
        values: `(B, T)` value estimates V_t of the state before token t.
        mask: `(B, T)` 1 on response tokens; responses are contiguous from position 0.

    Returns:
        advantages `(B, T)` and returns `(B, T)`, both 0 where `mask` is 0.
    """
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[:, 0])  # (B,)
    next_value = torch.zeros_like(values[:, 0])  # (B,)
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        # Past the end of a response mask is 0, which resets the recursion for that row.
        next_advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    returns = (advantages + values) * mask
    return advantages, returns


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate loss: mean over tokens of max(-A * ratio, -A * clip(ratio, 1 +- eps)).

    Args:
        logprobs: `(B, T)` log-probabilities under the policy being updated (with grad).
        old_logprobs: `(B, T)` log-probabilities at rollout time.
        advantages: `(B, T)` advantages.
        mask: `(B, T)` response mask.

    Returns:
        the loss (0-dim, with grad) and detached stats `clipfrac` and `approx_kl` (k3 of old vs new).
    """
    log_ratio = logprobs - old_logprobs  # (B, T)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, mask),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: 0.5 * mean over tokens of max((V - R)^2, (clip(V, V_old +- eps) - R)^2).

    Args:
        values: `(B, T)` current value predictions (with grad).
        old_values: `(B, T)` predictions at rollout time.
        returns: `(B, T)` GAE returns (targets).
        mask: `(B, T)` response mask.

    Returns:
        the loss (0-dim, with grad) and the detached stat `clipfrac`.
    """
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((clipped_error > unclipped_error).float(), mask)}
    return loss, stats


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at each position: `(B, T, V)` logits -> `(B, T)`."""
    log_probs = torch.log_softmax(logits, dim=-1)
    return -(log_probs.exp() * log_probs).sum(dim=-1)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(R - V) / Var(R) over the masked tokens; 1 is a perfect critic, <= 0 a useless one."""
    variance = masked_var(returns, mask)
    if variance <= 0:
        return float("nan")
    return float(1.0 - masked_var(returns - values, mask) / variance)
