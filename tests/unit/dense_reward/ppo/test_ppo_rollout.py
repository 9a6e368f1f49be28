"""Rollout on the tiny GPT-2: left padding, masking after EOS, temperature-scaled log-probs, reward checks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dense_reward.config import ModelSpec
from dense_reward.models import load_policy
from dense_reward.ppo.rollout import (
    RewardError,
    Rollout,
    dense_reward_tensor,
    generate,
    mask_after_eos,
    response_logits,
    score_tokens,
    stop_token_ids,
    token_logprobs,
    tokenize_prompts,
)


@pytest.fixture(scope="module")
def tiny(tiny_policy_spec: ModelSpec):
    torch.manual_seed(0)
    policy, tokenizer = load_policy(tiny_policy_spec)
    return policy.eval(), tokenizer


def test_mask_after_eos_keeps_the_first_eos_and_drops_the_rest() -> None:
    eos = 0
    response_ids = torch.tensor([[5, 6, 0, 7, 0], [5, 6, 7, 8, 9], [0, 4, 4, 4, 4]])
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.float32)
    torch.testing.assert_close(mask_after_eos(response_ids, eos), expected)


def test_rollout_token_ids_and_eos_flags() -> None:
    response_ids = torch.tensor([[5, 6, 0, 0], [5, 6, 7, 8]])
    rollout = Rollout(
        query_ids=torch.ones(2, 3, dtype=torch.long),
        query_mask=torch.ones(2, 3, dtype=torch.long),
        response_ids=response_ids,
        response_mask=mask_after_eos(response_ids, 0),
    )
    assert rollout.lengths == [3, 4]
    assert rollout.token_ids == [[5, 6, 0], [5, 6, 7, 8]]
    assert rollout.ended_with_eos(0).tolist() == [True, False]


def test_any_stop_token_ends_a_response() -> None:
    response_ids = torch.tensor([[5, 9, 7, 0], [5, 6, 0, 9], [5, 6, 7, 8]])
    mask = mask_after_eos(response_ids, [0, 9])
    torch.testing.assert_close(mask, torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0], [1.0] * 4]))
    rollout = Rollout(
        query_ids=torch.ones(3, 2, dtype=torch.long),
        query_mask=torch.ones(3, 2, dtype=torch.long),
        response_ids=response_ids,
        response_mask=mask,
        stop_token_ids=(0, 9),
    )
    assert rollout.ended_with_eos().tolist() == [True, True, False]
    assert rollout.ended_with_eos(0).tolist() == [False, True, False]
    with pytest.raises(ValueError, match="no stop token ids"):
        Rollout(rollout.query_ids, rollout.query_mask, response_ids, mask).ended_with_eos()


def test_stop_tokens_come_from_the_tokenizer_and_the_generation_config(tiny) -> None:
    policy, tokenizer = tiny
    eos = tokenizer.eos_token_id
    config = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[eos, 17, 3]))
    assert stop_token_ids(config, tokenizer) == (eos, 17, 3)
    assert stop_token_ids(SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=17)), tokenizer) == (eos, 17)
    assert stop_token_ids(SimpleNamespace(), tokenizer) == (eos,)
    assert stop_token_ids(policy, tokenizer) == (eos,)


def test_generation_stops_on_the_generation_config_end_of_turn_token(tiny) -> None:
    policy, tokenizer = tiny
    eos = tokenizer.eos_token_id
    end_of_turn = tokenizer.convert_tokens_to_ids(".")
    assert end_of_turn != eos

    def raise_end_of_turn(module, inputs, logits):
        # The end-of-turn token at about 10% per token, the tokenizer's EOS never.
        logits[..., end_of_turn] += 4.0
        logits[..., eos] -= 1e4
        return logits

    saved = policy.generation_config.eos_token_id
    policy.generation_config.eos_token_id = [eos, end_of_turn]
    handle = policy.lm_head.register_forward_hook(raise_end_of_turn)
    try:
        torch.manual_seed(0)
        rollout = generate(policy, tokenizer, ["Hello there"] * 8, max_new_tokens=12, temperature=1.0)
    finally:
        handle.remove()
        policy.generation_config.eos_token_id = saved
    assert rollout.stop_token_ids == (eos, end_of_turn)
    stopped = rollout.ended_with_eos()
    assert 0 < int(stopped.sum()) < 8
    for row, n, ended in zip(rollout.response_ids.tolist(), rollout.lengths, stopped.tolist(), strict=True):
        assert end_of_turn not in row[: n - 1]
        assert (row[n - 1] == end_of_turn) == ended
        if n < 12:  # stopped before the length cap: on the end-of-turn token
            assert ended
        assert all(token == tokenizer.pad_token_id for token in row[n:])


def test_left_padding_does_not_change_logprobs(tiny) -> None:
    policy, tokenizer = tiny
    short, long = "Hello there", "The day is good and the world is very kind to us today"
    response = torch.tensor([[40, 41, 42, 43, 44]])
    alone_ids, alone_mask = tokenize_prompts(tokenizer, [short], torch.device("cpu"))
    batch_ids, batch_mask = tokenize_prompts(tokenizer, [short, long], torch.device("cpu"))
    assert (batch_mask[0] == 0).any(), "the short prompt should be left-padded in the batch"
    with torch.no_grad():
        alone, _ = response_logits(policy, alone_ids, alone_mask, response, temperature=1.0)
        batched, _ = response_logits(policy, batch_ids, batch_mask, response.repeat(2, 1), temperature=1.0)
    torch.testing.assert_close(
        token_logprobs(batched[:1], response), token_logprobs(alone, response), atol=1e-5, rtol=0
    )


def test_logprobs_are_taken_at_the_sampling_temperature(tiny) -> None:
    policy, tokenizer = tiny
    torch.manual_seed(1)
    rollout = generate(policy, tokenizer, ["Hello there", "The day"], max_new_tokens=6, temperature=0.7)
    score_tokens(
        rollout, policy, temperature=0.7, reference=policy, critic=lambda **kw: kw["input_ids"] * 0.0
    )
    prompt = tokenizer("Hello there", return_tensors="pt")["input_ids"]
    n = rollout.lengths[0]
    response = rollout.response_ids[:1, :n]
    with torch.no_grad():
        logits = policy(torch.cat([prompt, response], dim=1)).logits[:, prompt.shape[1] - 1 : -1]
    expected = torch.log_softmax(logits / 0.7, dim=-1).gather(-1, response[..., None]).squeeze(-1)
    torch.testing.assert_close(rollout.logprobs[:1, :n], expected, atol=1e-5, rtol=0)
    # The reference is the same model here, so per-token KL is 0 and its entropy is the policy's.
    torch.testing.assert_close(rollout.ref_logprobs, rollout.logprobs)


def test_greedy_generation_is_the_same_alone_and_in_a_padded_batch(tiny) -> None:
    policy, tokenizer = tiny
    alone = generate(policy, tokenizer, ["Hello there"], max_new_tokens=6, greedy=True)
    batched = generate(
        policy,
        tokenizer,
        ["Hello there", "The day is good and the world is very kind"],
        max_new_tokens=6,
        greedy=True,
    )
    assert batched.token_ids[0] == alone.token_ids[0]


def test_generation_masks_and_pads_everything_after_eos(tiny) -> None:
    policy, tokenizer = tiny
    eos = tokenizer.eos_token_id

    def raise_eos(module, inputs, logits):
        # EOS at about 10% per token: some responses stop early, others run to the length cap.
        logits[..., eos] += 4.0
        return logits

    handle = policy.lm_head.register_forward_hook(raise_eos)
    try:
        torch.manual_seed(0)
        rollout = generate(policy, tokenizer, ["Hello there"] * 8, max_new_tokens=12, temperature=1.0)
    finally:
        handle.remove()
    assert 0 < int(rollout.ended_with_eos(eos).sum()) < 8
    for row, n in zip(rollout.response_ids.tolist(), rollout.lengths, strict=True):
        assert eos not in row[: n - 1]
        assert all(token == tokenizer.pad_token_id for token in row[n:])
    assert rollout.response_mask.shape == rollout.response_ids.shape


def test_empty_prompt_is_rejected(tiny) -> None:
    _, tokenizer = tiny
    with pytest.raises(ValueError, match=r"index \[1\]"):
        tokenize_prompts(tokenizer, ["Hello", ""], torch.device("cpu"))


def test_dense_reward_tensor_pads_rows() -> None:
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    rewards = dense_reward_tensor(
        [np.array([0.5, 1.0]), np.array([1.0, 2.0, 3.0])], np.array([1.5, 6.0]), [2, 3], mask
    )
    torch.testing.assert_close(rewards, torch.tensor([[0.5, 1.0, 0.0], [1.0, 2.0, 3.0]]))


@pytest.mark.parametrize(
    ("dense", "scores", "message"),
    [
        ([np.ones(2), np.ones(2)], np.ones(2), r"dense\[1\] must hold one float per response token \(3"),
        ([np.ones(2)], np.ones(2), "dense has 1 arrays for 2 responses"),
        (
            [np.ones(2), np.array([1.0, np.nan, 1.0])],
            np.ones(2),
            r"dense\[1\] is not finite at token\(s\) \[1\]",
        ),
        ([np.ones(2), np.ones(3)], np.array([1.0, np.inf]), r"scores of response\(s\) \[1\] are not finite"),
        ([np.ones(2), np.ones(3)], np.ones(3), r"scores must have shape \(2,\)"),
    ],
)
def test_dense_reward_tensor_rejects_malformed_rewards(dense, scores, message) -> None:
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    with pytest.raises(RewardError, match=message):
        dense_reward_tensor(dense, scores, [2, 3], mask)
