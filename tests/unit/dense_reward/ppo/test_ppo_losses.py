"""GAE, KL estimators, whitening and the clipped losses against small hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from dense_reward.ppo.losses import (
    entropy_from_logits,
    explained_variance,
    gae,
    kl_per_token,
    masked_mean,
    masked_var,
    masked_whiten,
    policy_loss,
    value_loss,
)


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_gae_without_discount_is_reward_to_go_minus_value() -> None:
    rewards, values, mask = t([[0.0, 0.0, 1.0]]), t([[0.5, 0.5, 0.5]]), t([[1.0, 1.0, 1.0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(advantages, t([[0.5, 0.5, 0.5]]))
    torch.testing.assert_close(returns, t([[1.0, 1.0, 1.0]]))


def test_gae_with_discount_and_lambda_matches_hand_computation() -> None:
    # delta_2 = 1 - 0.5 = 0.5;            A_2 = 0.5
    # delta_1 = 0.9 * 0.5 - 0.5 = -0.05;  A_1 = -0.05 + 0.45 * 0.5 = 0.175
    # delta_0 = -0.05;                    A_0 = -0.05 + 0.45 * 0.175 = 0.02875
    rewards, values, mask = t([[0.0, 0.0, 1.0]]), t([[0.5, 0.5, 0.5]]), t([[1.0, 1.0, 1.0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    torch.testing.assert_close(advantages, t([[0.02875, 0.175, 0.5]]))
    torch.testing.assert_close(returns, t([[0.52875, 0.675, 1.0]]))


def test_gae_ends_each_episode_at_its_mask() -> None:
    # Row 0 ends after two tokens: the value 9 and reward 5 past the end must not leak back.
    rewards = t([[0.0, 1.0, 5.0], [1.0, 0.0, 2.0]])
    values = t([[0.2, 0.4, 9.0], [0.0, 0.0, 0.0]])
    mask = t([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(advantages, t([[0.8, 0.6, 0.0], [3.0, 2.0, 2.0]]))
    torch.testing.assert_close(returns, t([[1.0, 1.0, 0.0], [3.0, 2.0, 2.0]]))


def test_kl_estimators() -> None:
    logprobs, ref_logprobs = t([[math.log(0.5)]]), t([[math.log(0.25)]])
    torch.testing.assert_close(kl_per_token(logprobs, ref_logprobs, "k1"), t([[math.log(2.0)]]))
    # k3 = q/p - 1 - log(q/p) = 0.5 - 1 + log 2
    torch.testing.assert_close(kl_per_token(logprobs, ref_logprobs, "k3"), t([[math.log(2.0) - 0.5]]))
    # k3 is never negative, k1 can be.
    assert (
        kl_per_token(ref_logprobs, logprobs, "k1").item()
        < 0
        < kl_per_token(ref_logprobs, logprobs, "k3").item()
    )
    with pytest.raises(ValueError, match="kl_estimator"):
        kl_per_token(logprobs, ref_logprobs, "k2")  # type: ignore[arg-type]


def test_masked_statistics_ignore_masked_positions() -> None:
    values, mask = t([[1.0, 2.0, 3.0, 100.0]]), t([[1.0, 1.0, 1.0, 0.0]])
    assert masked_mean(values, mask).item() == pytest.approx(2.0)
    assert masked_var(values, mask).item() == pytest.approx(1.0)
    assert masked_var(values, mask, unbiased=False).item() == pytest.approx(2.0 / 3.0)
    torch.testing.assert_close(masked_whiten(values, mask), t([[-1.0, 0.0, 1.0, 0.0]]), atol=1e-6, rtol=0)
    # Without the mean shift only the scale changes: the mean 2 stays.
    torch.testing.assert_close(
        masked_whiten(values, mask, shift_mean=False), t([[1.0, 2.0, 3.0, 0.0]]), atol=1e-6, rtol=0
    )


def test_policy_loss_clips_only_in_the_direction_that_helps() -> None:
    old = t([[0.0, 0.0, 0.0]])
    new = t([[math.log(1.5), math.log(0.5), 0.0]])  # ratios 1.5, 0.5, 1.0
    advantages, mask = t([[1.0, 1.0, -1.0]]), t([[1.0, 1.0, 1.0]])
    new.requires_grad_(True)
    loss, stats = policy_loss(new, old, advantages, mask, clip_range=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 (clipped); token 1: max(-0.5, -0.8) = -0.5; token 2: 1.
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.0) / 3)
    assert stats["clipfrac"].item() == pytest.approx(1 / 3)
    loss.backward()
    # The clipped token gets no gradient; the others get -A * ratio / 3.
    torch.testing.assert_close(new.grad, t([[0.0, -0.5 / 3, 1.0 / 3]]))


def test_policy_loss_approx_kl_is_zero_at_the_rollout_policy() -> None:
    logprobs, mask = t([[-1.0, -2.0]]), t([[1.0, 1.0]])
    loss, stats = policy_loss(logprobs, logprobs, t([[1.0, -3.0]]), mask, clip_range=0.2)
    assert loss.item() == pytest.approx((-1.0 + 3.0) / 2)
    assert stats["approx_kl"].item() == 0.0
    assert stats["clipfrac"].item() == 0.0


def test_value_loss_takes_the_larger_of_clipped_and_unclipped_error() -> None:
    values, old_values = t([[1.0, 0.0, 7.0]]), t([[0.5, 0.5, 0.0]])
    returns, mask = t([[2.0, 0.0, 0.0]]), t([[1.0, 1.0, 0.0]])
    loss, stats = value_loss(values, old_values, returns, mask, clip_range_value=0.2)
    # token 0: clip(1.0) = 0.7 -> max(1, 1.69); token 1: clip(0.0) = 0.3 -> max(0, 0.09); token 2 masked.
    assert loss.item() == pytest.approx(0.5 * (1.69 + 0.09) / 2)
    assert stats["clipfrac"].item() == pytest.approx(1.0)


def test_entropy_and_explained_variance() -> None:
    uniform = torch.zeros(1, 2, 4)
    torch.testing.assert_close(entropy_from_logits(uniform), torch.full((1, 2), math.log(4.0)))
    returns, mask = t([[1.0, 2.0, 3.0]]), t([[1.0, 1.0, 1.0]])
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.zeros_like(returns) + 2.0, returns, mask) == pytest.approx(0.0)
