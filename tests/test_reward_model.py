"""RewardModel: joining, response location, truncation, batching, per-position scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dense_reward.config import ModelSpec, RewardModelSpec
from dense_reward.models import ModelLoadError, load_tokenizer
from dense_reward.reward_model import PADDING_BUDGET, RewardModel


@pytest.fixture(scope="module")
def reward_model(tiny_rm_spec: RewardModelSpec) -> RewardModel:
    return RewardModel.from_spec(tiny_rm_spec)


def tiny_causal_reward_model(batch_size: int = 64) -> RewardModel:
    """A 2-layer GPT-2 with a `score` head (a causal RM), on the tiny policy tokenizer."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    tokenizer = load_tokenizer(ModelSpec(path="builtin:tiny-gpt2"), padding_side="right")
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2, num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    config._attn_implementation = "eager"
    model = GPT2ForSequenceClassification(config).eval().requires_grad_(False)
    spec = RewardModelSpec(path="tiny-causal-rm", batch_size=batch_size, max_length=config.n_positions)
    return RewardModel(model, tokenizer, spec)


def test_response_tokens_and_offsets(reward_model: RewardModel) -> None:
    prompt, response = "Tell me something.", "Sure, here is a good idea!"
    (item,) = reward_model.encode([prompt], [response])
    text, start = reward_model.join(prompt, response)
    assert text[start:] == response
    tokens = reward_model.tokenizer.convert_ids_to_tokens(item.input_ids)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert item.response_end == len(item.input_ids) - 1
    assert len(item.response_offsets) == item.response_length > 0
    pieces = [response[s:e].lower() for s, e in item.response_offsets]
    assert "".join(pieces) == response.replace(" ", "").lower()


def test_empty_response_sits_before_the_suffix(reward_model: RewardModel) -> None:
    (item,) = reward_model.encode(["Hello there"], [""])
    assert item.response_length == 0
    assert item.response_start == len(item.input_ids) - 1


def test_truncation_cuts_the_prompt_first(tiny_rm_spec: RewardModelSpec) -> None:
    model = RewardModel.from_spec(tiny_rm_spec.model_copy(update={"max_length": 16}))
    prompt, response = " ".join(["the good day"] * 20), "thanks a lot friend"
    (item,) = model.encode([prompt], [response])
    assert len(item.input_ids) == 16
    assert item.input_ids[0] == model.tokenizer.cls_token_id
    kept = model.tokenizer.decode(item.input_ids[item.response_start : item.response_end])
    assert kept == "thanks a lot friend"
    # A response longer than the window loses the whole prompt, then keeps its own beginning.
    (long_item,) = model.encode(["hi"], [" ".join(["good"] * 30)])
    assert len(long_item.input_ids) == 16
    assert long_item.response_start == 1 and long_item.response_length == 14
    assert long_item.response_offsets[0] == (0, 2) and len(long_item.response_offsets) == 14


def test_batched_scores_match_single_scores(tiny_rm_spec: RewardModelSpec) -> None:
    small = RewardModel.from_spec(tiny_rm_spec.model_copy(update={"batch_size": 3}))
    prompts = [f"prompt {i}" for i in range(7)]
    responses = ["good " * i + "day" for i in range(7)]
    batched = small.score(prompts, responses)
    assert batched.dtype == torch.float32 and batched.shape == (7,)
    # Lengths differ a lot here, so batches are cut to keep padding low.
    assert small.forward_calls > 3
    calls = small.forward_calls
    small.score(prompts, ["good day"] * 7)
    assert small.forward_calls - calls == 3  # equal lengths: full batches of 3
    single = torch.stack([small.score([p], [r])[0] for p, r in zip(prompts, responses, strict=True)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_chunks_bound_batch_size_and_padding(reward_model: RewardModel) -> None:
    sequences = [[1] * n for n in [48, 50, 49, 30, 29, 5, 5, 5]]
    groups = list(reward_model.chunks(sequences))
    assert groups == [[1, 2, 0], [3, 4], [5, 6, 7]]
    for group in groups:
        width = max(len(sequences[i]) for i in group)
        padded = width * len(group) - sum(len(sequences[i]) for i in group)
        assert padded <= PADDING_BUDGET * width * len(group)


def test_chat_template_is_used_when_present(tiny_rm_spec: RewardModelSpec) -> None:
    model = RewardModel.from_spec(tiny_rm_spec)
    model.tokenizer.chat_template = (
        "{% for m in messages %}[CLS] {{ m['role'] }}: {{ m['content'] }} [SEP]{% endfor %}"
    )
    model.uses_chat_template = True
    text, start = model.join("hi there", "good day")
    assert text == "[CLS] user: hi there [SEP][CLS] assistant: good day [SEP]"
    assert text[start : start + 8] == "good day"
    (item,) = model.encode(["hi there"], ["good day"])
    assert model.tokenizer.decode(item.input_ids[item.response_start : item.response_end]) == "good day"
    assert model.tokenizer.convert_ids_to_tokens(item.input_ids[item.response_end :]) == ["[SEP]"]


def test_causal_position_scores_equal_prefix_scores() -> None:
    model = tiny_causal_reward_model(batch_size=4)
    assert model.is_causal
    items = model.encode(["Say something.", "Hi"], [" Thanks, a good day!", " ok then"])
    positions = model.position_scores(items)
    for item, per_position in zip(items, positions, strict=True):
        prefixes = [item.input_ids[:j] for j in range(1, len(item.input_ids) + 1)]
        np.testing.assert_allclose(per_position, model.score_ids(prefixes), atol=1e-5)
        assert per_position[-1] == pytest.approx(model.score_inputs([item])[0], abs=1e-5)


def test_encoder_has_no_position_scores(reward_model: RewardModel) -> None:
    with pytest.raises(ValueError, match="causal"):
        reward_model.position_scores(reward_model.encode(["a"], ["b"]))


def test_slow_tokenizer_is_refused(reward_model: RewardModel) -> None:
    class Slow:
        is_fast = False
        pad_token_id = 0

    with pytest.raises(ModelLoadError, match="fast tokenizer"):
        RewardModel(reward_model.model, Slow(), RewardModelSpec(path="x"))
