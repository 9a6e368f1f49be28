"""The shortcuts of the PPO step give what the plain computation gives: the sampler's logits as rollout
log-probs, and one-kernel GELU in place of the models' elementwise `gelu_new`."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers.activations import NewGELUActivation

from dense_reward.config import Config, ModelSpec
from dense_reward.models import load_policy
from dense_reward.ppo.activations import TanhGELU, fuse_gelu
from dense_reward.ppo.rollout import generate, score_tokens
from dense_reward.ppo.value import ValueHead
from dense_reward.run import build_trainer
from dense_reward.shaping import RewardOutput

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["Hello there", "The day is good and the world is very kind to us today", "Tell me", "What is it"]


@pytest.fixture(scope="module")
def tiny(tiny_policy_spec: ModelSpec):
    torch.manual_seed(0)
    policy, tokenizer = load_policy(tiny_policy_spec)
    return policy.eval(), tokenizer


def raise_eos(policy, tokenizer, temperature: float):
    """A hook making EOS likely (about 10% per token), so some responses stop early and get padded."""
    eos = tokenizer.eos_token_id

    def hook(module, inputs, logits):
        logits[..., eos] += 4.0 * temperature
        return logits

    return policy.lm_head.register_forward_hook(hook)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampler_logprobs_equal_a_forward_over_query_and_response(tiny, temperature: float) -> None:
    policy, tokenizer = tiny
    handle = raise_eos(policy, tokenizer, temperature)
    try:
        torch.manual_seed(3)
        fast = generate(policy, tokenizer, PROMPTS * 2, max_new_tokens=10, temperature=temperature, policy_scores=True)
        torch.manual_seed(3)
        plain = generate(policy, tokenizer, PROMPTS * 2, max_new_tokens=10, temperature=temperature)
        assert torch.equal(fast.response_ids, plain.response_ids)
        assert 0 < int(plain.ended_with_eos().sum()) < len(PROMPTS) * 2, "want both stopped and capped rows"
        score_tokens(plain, policy, temperature, reference=policy, critic=lambda **kw: kw["input_ids"] * 0.0)
    finally:
        handle.remove()
    # Left-padded prompts, responses padded after EOS: the same numbers up to float rounding, 0 past EOS.
    torch.testing.assert_close(fast.logprobs, plain.logprobs, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.entropy, plain.entropy, atol=1e-5, rtol=0)
    assert (fast.logprobs[fast.response_mask == 0] == 0).all()


def test_score_tokens_keeps_sampler_scores_and_skips_the_policy_forward(tiny) -> None:
    policy, tokenizer = tiny
    reference = copy.deepcopy(policy)
    calls = []
    handle = policy.register_forward_hook(lambda *args: calls.append(1))
    try:
        rollout = generate(policy, tokenizer, PROMPTS, max_new_tokens=6, policy_scores=True)
        sampled = rollout.logprobs.clone()
        calls.clear()
        score_tokens(rollout, policy, 1.0, reference=reference, critic=lambda **kw: kw["input_ids"] * 0.0)
    finally:
        handle.remove()
    assert calls == []
    assert torch.equal(rollout.logprobs, sampled)
    # The reference is an exact copy of the policy: its full forward agrees with the sampler's log-probs.
    torch.testing.assert_close(rollout.ref_logprobs, rollout.logprobs, atol=1e-5, rtol=0)


def test_sampler_hidden_states_give_a_value_heads_values_without_a_policy_forward(tiny) -> None:
    policy, tokenizer = tiny
    torch.manual_seed(1)
    head = ValueHead(policy.config.hidden_size)
    with torch.no_grad():
        # A head that has trained (a fresh one outputs 0): values that depend on the hidden states and
        # sit away from 0, so a wrong position or the mask past EOS shows.
        head.linear.weight.normal_(std=0.1)
        head.linear.bias.fill_(0.5)
    handle = raise_eos(policy, tokenizer, 1.0)
    calls = []
    try:
        torch.manual_seed(3)
        fast = generate(policy, tokenizer, PROMPTS * 2, max_new_tokens=10, policy_scores=True, value_head=head)
        torch.manual_seed(3)
        plain = generate(policy, tokenizer, PROMPTS * 2, max_new_tokens=10)
        assert 0 < int(plain.ended_with_eos().sum()) < len(PROMPTS) * 2, "want both stopped and capped rows"
        score_tokens(plain, policy, 1.0, reference=policy, value_head=head)
        sampled_values = fast.values.clone()
        reference = copy.deepcopy(policy)
        counter = policy.register_forward_hook(lambda *args: calls.append(1))
        try:
            score_tokens(fast, policy, 1.0, reference=reference, value_head=head)
        finally:
            counter.remove()
    finally:
        handle.remove()
    assert calls == [], "the policy ran a forward although the sampler gave logits and values"
    assert torch.equal(fast.values, sampled_values)
    torch.testing.assert_close(fast.values, plain.values, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.logprobs, plain.logprobs, atol=1e-5, rtol=0)
    assert (fast.values[fast.response_mask == 0] == 0).all()
    assert (fast.values[fast.response_mask == 1] != 0).all()


def test_one_kernel_gelu_is_gelu_new_up_to_rounding() -> None:
    x = torch.linspace(-8.0, 8.0, 4001, dtype=torch.float32, requires_grad=True)
    y = torch.linspace(-8.0, 8.0, 4001, dtype=torch.float32, requires_grad=True)
    fused, unfused = TanhGELU()(x), NewGELUActivation()(y)
    torch.testing.assert_close(fused, unfused, atol=1e-6, rtol=1e-6)
    fused.sum().backward()
    unfused.sum().backward()
    torch.testing.assert_close(x.grad, y.grad, atol=1e-5, rtol=1e-5)


def test_fuse_gelu_swaps_every_gelu_new_and_keeps_outputs_and_weights(tiny) -> None:
    policy, tokenizer = tiny
    fused = copy.deepcopy(policy)
    assert fuse_gelu(fused) == policy.config.n_layer
    assert not any(isinstance(m, NewGELUActivation) for m in fused.modules())
    assert fuse_gelu(fused) == 0
    assert fused.state_dict().keys() == policy.state_dict().keys()
    ids = tokenizer(PROMPTS[1], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(fused(ids).logits, policy(ids).logits, atol=1e-5, rtol=0)


def test_trainer_fuses_its_models_and_uses_a_fused_optimizer(tiny_config: Config) -> None:
    def reward_fn(prompts: list[str], response_token_ids: list[list[int]]) -> RewardOutput:
        raise AssertionError("not called")

    trainer = build_trainer(tiny_config, reward_fn)
    for model in (trainer.policy, trainer.reference, trainer.critic):
        assert any(isinstance(m, TanhGELU) for m in model.modules())
        assert not any(isinstance(m, NewGELUActivation) for m in model.modules())
    assert trainer.optimizer.defaults["fused"] is True
