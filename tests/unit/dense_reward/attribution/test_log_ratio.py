"""`log_ratio`: per-token log pi_dpo - log pi_ref from the DPO-tuned tiny policy and its reference.

The credit is checked against log-probabilities computed here from plain forwards of the two models,
its shaped reward against r, and its alignment onto a policy that tokenises differently.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from dense_reward.attribution import ScoredBatch, build_explainer, policy_token_offsets
from dense_reward.attribution.log_ratio import LogRatioSetupError
from dense_reward.config import ConfigError, ModelSpec, ShapingConfig, validate_config
from dense_reward.models import load_tokenizer, resolve_model_path
from dense_reward.reward_model import RewardModel
from dense_reward.shaping import NORMALIZERS, DenseReward, shape
from tests.support.reward_models import word_level_tokenizer
from tests.support.sources import LOG_RATIO_OPTIONS, LOG_RATIO_SECTION

PROMPTS = ["Tell me about your day.", "What do you think?", "Please help."]
RESPONSES = [" It was a good day, thank you!", " I think it is very important.", " Sure"]


@pytest.fixture(scope="module")
def policy_tokenizer():
    return load_tokenizer(ModelSpec(path="builtin:tiny-gpt2"))


@pytest.fixture(scope="module")
def explainer():
    return build_explainer("log_ratio", None, **LOG_RATIO_OPTIONS)


def batch_of(tokenizer, responses=RESPONSES, prompts=PROMPTS, scores=None) -> ScoredBatch:
    eos = tokenizer.eos_token_id
    decoded = [policy_token_offsets(tokenizer, tokenizer.encode(r) + [eos]) for r in responses]
    scores = np.linspace(-1.0, 2.0, len(responses)) if scores is None else scores
    return ScoredBatch(list(prompts), [t for t, _ in decoded], [o for _, o in decoded], np.asarray(scores))


def direct_log_ratio(prompt: str, response: str, tokenizer) -> np.ndarray:
    """(T,) log pi_dpo - log pi_ref of each response token, one sequence at a time, no padding."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + response_ids])
    per_model = []
    for name in (LOG_RATIO_OPTIONS["policy"], LOG_RATIO_OPTIONS["reference"]):
        model = AutoModelForCausalLM.from_pretrained(resolve_model_path(name)).eval()
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1]  # (T, V)
        per_model.append(torch.log_softmax(logits, dim=-1)[torch.arange(len(response_ids)), response_ids])
    return (per_model[0] - per_model[1]).double().numpy()


def test_credit_is_the_per_token_log_ratio(explainer, policy_tokenizer) -> None:
    batch = batch_of(policy_tokenizer)
    credits = explainer.explain(batch)
    for prompt, response, credit in zip(batch.prompts, batch.responses, credits, strict=True):
        expected = direct_log_ratio(prompt, response, policy_tokenizer)
        # Same tokenizer as the policy: one credit per text token, and nothing on the trailing EOS.
        np.testing.assert_allclose(credit[:-1], expected, atol=1e-4)
        assert credit[-1] == 0.0
    # DPO moved the policy: the ratio is not zero.
    assert np.abs(np.concatenate(credits)).max() > 1e-3
    assert explainer.forward_calls >= 2


@pytest.mark.parametrize("normalize", NORMALIZERS)
def test_shaped_log_ratio_credit_sums_to_r(explainer, policy_tokenizer, normalize: str) -> None:
    batch = batch_of(policy_tokenizer)
    credits = explainer.explain(batch)
    dense = shape({"log_ratio": credits}, {"log_ratio": 1.0}, batch.scores, normalize=normalize)
    for row, r in zip(dense, batch.scores, strict=True):
        assert row.sum() == pytest.approx(r, abs=1e-9)
    if normalize == "signed":  # r scales the log-ratios themselves (their sum is not ~0 here)
        for row, credit, r in zip(dense, credits, batch.scores, strict=True):
            np.testing.assert_allclose(row, r * credit / credit.sum(), atol=1e-9)


def test_a_policy_with_another_tokenizer_gets_the_credit_by_characters(explainer) -> None:
    words = word_level_tokenizer()  # word-level, unlike the DPO model's byte-level BPE
    decoded = [policy_token_offsets(words, words(r, add_special_tokens=False)["input_ids"]) for r in RESPONSES]
    batch = ScoredBatch(PROMPTS, [t for t, _ in decoded], [o for _, o in decoded], np.ones(3))
    same = explainer.explain(batch_of(explainer.tokenizer, batch.responses))
    for credit, offsets, reference in zip(explainer.explain(batch), batch.response_offsets, same, strict=True):
        assert credit.shape == (len(offsets),)
        assert credit.sum() == pytest.approx(reference.sum(), abs=1e-6)


def test_dpo_model_and_reference_on_different_tokenizers_are_refused(tmp_path, policy_tokenizer) -> None:
    other = tmp_path / "other-tokenizer"
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path("builtin:tiny-gpt2"))
    tokenizer = load_tokenizer(ModelSpec(path="builtin:tiny-gpt2"))
    tokenizer.add_tokens(["<extra>"])
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(other)
    tokenizer.save_pretrained(other)
    with pytest.raises(LogRatioSetupError, match=r"shaping.log_ratio: the tokenizers of policy .* and reference .* differ"):
        build_explainer("log_ratio", None, policy=LOG_RATIO_OPTIONS["policy"], reference=str(other))


def test_config_needs_both_models_when_log_ratio_is_a_source(tiny_config) -> None:
    data = tiny_config.library_config().model_dump()
    data["shaping"]["sources"] = ["sparse", "log_ratio"]
    with pytest.raises(ConfigError, match=r"shaping.log_ratio.policy .* must both be set"):
        validate_config(data)
    data["shaping"]["log_ratio"] = LOG_RATIO_SECTION
    assert validate_config(data).shaping.log_ratio.policy.path == LOG_RATIO_OPTIONS["policy"]
    with pytest.raises(LogRatioSetupError, match=r"shaping.log_ratio.reference: not set"):
        build_explainer("log_ratio", None, policy=LOG_RATIO_OPTIONS["policy"])


def test_log_ratio_alone_in_a_16_response_ppo_batch(tiny_rm_spec, policy_tokenizer) -> None:
    from dense_reward.builtin.tiny import corpus

    reward_model = RewardModel.from_spec(tiny_rm_spec)
    prompts = [f"Question {i}: {s}" for i, s in enumerate(corpus(16, seed=4))]
    token_ids = [policy_tokenizer.encode(" " + s)[:24] + [policy_tokenizer.eos_token_id] for s in corpus(16, seed=3)]
    token_ids[0] = [policy_tokenizer.eos_token_id]
    shaping = ShapingConfig(sources=["sparse", "log_ratio"], log_ratio=LOG_RATIO_SECTION, normalize="signed")
    out = DenseReward(reward_model, policy_tokenizer, shaping, {"log_ratio": 1.0})(prompts, token_ids)
    assert set(out.attributions) == {"log_ratio"}
    for ids, credit, dense, r in zip(token_ids, out.attributions["log_ratio"], out.dense, out.scores, strict=True):
        assert credit.shape == dense.shape == (len(ids),)
        assert dense.sum() == pytest.approx(r, abs=1e-6)
    assert sum(np.any(credit != 0) for credit in out.attributions["log_ratio"]) == 15
