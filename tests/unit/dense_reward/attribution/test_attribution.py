"""Attribution sources: exact on an additive reward model, and every source on the tiny models.

The additive RM is a real torch module with its own word-level tokenizer (not the policy's
byte-level BPE): score = sum over tokens of a per-token value, with [MASK] and [PAD] worth 0. Its
Shapley values (hence Owen values) and prefix differences are the per-token values exactly
(integrated gradients on the same RM: test_gradient_sources.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dense_reward.attribution import EXPLAINERS, Explainer, ScoredBatch, build_explainer, policy_token_offsets
from dense_reward.attribution.attention import AttentionUnavailableError
from dense_reward.attribution.batching import Scorer, run_concurrently
from dense_reward.builtin.tiny import WORDS, corpus
from dense_reward.config import ModelSpec, RewardModelSpec, ShapingConfig
from dense_reward.models import load_tokenizer
from dense_reward.reward_model import RewardModel
from dense_reward.shaping import DenseReward
from dense_reward.simplex import SOURCES
from tests.support.reward_models import AdditiveRewardModel, tiny_causal_reward_model, word_level_tokenizer
from tests.support.sources import LOG_RATIO_OPTIONS, LOG_RATIO_SECTION


@pytest.fixture(scope="module")
def additive() -> tuple[RewardModel, AdditiveRewardModel]:
    tokenizer = word_level_tokenizer()
    zero = [tokenizer.pad_token_id, tokenizer.mask_token_id]
    module = AdditiveRewardModel(len(tokenizer), zero)
    return RewardModel(module, tokenizer, RewardModelSpec(path="additive", batch_size=32)), module


@pytest.fixture(scope="module")
def policy_tokenizer():
    return load_tokenizer(ModelSpec(path="builtin:tiny-gpt2"))


def scored_batch(reward_model: RewardModel, policy_tokenizer, prompts: list[str], responses: list[str]) -> ScoredBatch:
    """A batch as PPO produces it: policy token ids (ending in EOS) decoded back to text."""
    eos = policy_tokenizer.eos_token_id
    decoded = [policy_token_offsets(policy_tokenizer, policy_tokenizer.encode(r) + [eos]) for r in responses]
    texts = [text for text, _ in decoded]
    scores = reward_model.score(prompts, texts).double().numpy()
    return ScoredBatch(prompts, texts, [offsets for _, offsets in decoded], scores)


def expected_values(reward_model: RewardModel, module: AdditiveRewardModel, response: str) -> np.ndarray:
    ids = reward_model.tokenizer(response, add_special_tokens=False)["input_ids"]
    return module.token_values(ids)


PROMPTS = ["Tell me about your day.", "What do you think?", "Please help."]
RESPONSES = [" It was a good day, thank you!", " I think it is very important.", " Sure"]


@pytest.mark.parametrize("source", ["shap", "redistribution"])
def test_exact_on_additive_reward(additive, policy_tokenizer, source: str) -> None:
    reward_model, module = additive
    batch = scored_batch(reward_model, policy_tokenizer, PROMPTS, RESPONSES)
    # max_evals well above M^2 for M <= 10 tokens: the whole partition tree is expanded.
    options = {"max_evals": 400} if source == "shap" else {}
    explainer = build_explainer(source, reward_model, **options)
    credits = explainer.credit(batch)
    for response, credit in zip(batch.responses, credits, strict=True):
        np.testing.assert_allclose(credit.values, expected_values(reward_model, module, response), atol=1e-5)
    # On policy tokens the credit keeps its total.
    for response, dense in zip(batch.responses, explainer.explain(batch), strict=True):
        assert dense.sum() == pytest.approx(expected_values(reward_model, module, response).sum(), abs=1e-5)


def test_lime_correlates_with_additive_values(additive, policy_tokenizer) -> None:
    reward_model, module = additive
    batch = scored_batch(reward_model, policy_tokenizer, PROMPTS[:2], RESPONSES[:2])
    credits = build_explainer("lime", reward_model, num_samples=300).credit(batch)
    for response, credit in zip(batch.responses, credits, strict=True):
        expected = expected_values(reward_model, module, response)
        assert np.corrcoef(credit.values, expected)[0, 1] > 0.9


def test_attention_needs_attention_weights(additive, policy_tokenizer) -> None:
    reward_model, _ = additive
    batch = scored_batch(reward_model, policy_tokenizer, PROMPTS, RESPONSES)
    with pytest.raises(AttentionUnavailableError, match="eager"):
        build_explainer("attention", reward_model).explain(batch)


def test_batched_shap_equals_one_by_one(additive, policy_tokenizer) -> None:
    reward_model, _ = additive
    batch = scored_batch(reward_model, policy_tokenizer, PROMPTS, RESPONSES)
    batched = build_explainer("shap", reward_model, max_evals=30)
    serial = build_explainer("shap", reward_model, max_evals=30, batched=False)
    # Equal up to float32 rounding: merged forwards pad the texts to other widths.
    for a, b in zip(batched.explain(batch), serial.explain(batch), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    stats = batched.last_stats
    assert stats is not None and stats.flushes < stats.requests


def test_batcher_merges_and_deduplicates(additive) -> None:
    reward_model, _ = additive
    calls_before = reward_model.forward_calls

    def ids(response: str) -> list[int]:
        return reward_model.encode(["p"], [response])[0].input_ids

    def task(index: int):
        def run(scorer: Scorer) -> list[float]:
            first = scorer.score([ids("good day"), ids(f"day {WORDS[index]}")])
            second = scorer.score([ids("good day")])
            return [*first.tolist(), *second.tolist()]

        return run

    results, stats = run_concurrently([task(i) for i in range(6)], reward_model)
    # 7 distinct sequences in one forward; the second round is served from the cache.
    assert reward_model.forward_calls - calls_before == 1
    direct = Scorer(reward_model)
    for i, result in enumerate(results):
        np.testing.assert_allclose(result, [*direct.score([ids("good day"), ids(f"day {WORDS[i]}")]), result[0]])
    assert stats.flushes == 2 and stats.sequences == 18 and stats.scored == 7


def test_batcher_raises_the_error_of_the_first_failing_task(additive) -> None:
    reward_model, _ = additive
    sequence = reward_model.encode(["p"], ["a"])[0].input_ids

    def failing(message: str):
        def run(scorer: Scorer) -> None:
            scorer.score([sequence])
            raise RuntimeError(message)

        return run

    def fine(scorer: Scorer) -> float:
        return float(scorer.score([sequence])[0])

    # Task 3 may fail first in time; task 1 is reported, the same on every run.
    with pytest.raises(RuntimeError, match="task 1"):
        run_concurrently([fine, failing("task 1"), fine, failing("task 3")], reward_model)


def test_causal_redistribution_uses_one_forward_and_matches_prefixes(policy_tokenizer) -> None:

    reward_model = tiny_causal_reward_model()
    batch = scored_batch(reward_model, policy_tokenizer, PROMPTS, RESPONSES)
    before = reward_model.sequences_scored
    credits = build_explainer("redistribution", reward_model).credit(batch)
    # Each response is run once, not once per prefix.
    assert reward_model.sequences_scored - before == len(batch)
    for item, credit in zip(reward_model.encode(batch.prompts, batch.responses), credits, strict=True):
        prefixes = [item.input_ids[: item.response_start + t] for t in range(item.response_length + 1)]
        np.testing.assert_allclose(credit.values, np.diff(reward_model.score_ids(prefixes)), atol=1e-5)


def test_registry_knows_every_source(additive) -> None:
    assert tuple(EXPLAINERS) == SOURCES
    for name, explainer in EXPLAINERS.items():
        assert explainer.name == name
        # Only sparse and attention credit is a distribution already; the rest is signed.
        assert explainer.is_distribution == (name in ("sparse", "attention"))
        options = LOG_RATIO_OPTIONS if name == "log_ratio" else {}
        assert isinstance(build_explainer(name, additive[0], **options), Explainer)
    with pytest.raises(ValueError, match="unknown attribution source"):
        build_explainer("nope", additive[0])
    with pytest.raises(ValueError, match="bad options"):
        build_explainer("shap", additive[0], max_evls=3)


@pytest.mark.timeout(300)
def test_every_source_on_tiny_models_in_a_ppo_batch(tiny_rm_spec, policy_tokenizer) -> None:
    reward_model = RewardModel.from_spec(tiny_rm_spec)
    sentences = corpus(16, seed=3)
    prompts = [f"Question {i}: {s}" for i, s in enumerate(corpus(16, seed=4))]
    token_ids = [policy_tokenizer.encode(" " + s)[:24] + [policy_tokenizer.eos_token_id] for s in sentences]
    token_ids[0] = [policy_tokenizer.eos_token_id]  # an empty response (EOS at once)
    weights = {name: 1.0 / len(SOURCES) for name in SOURCES}
    shaping = ShapingConfig(
        sources=list(SOURCES), shap={"max_evals": 16}, lime={"num_samples": 16}, log_ratio=LOG_RATIO_SECTION
    )
    reward = DenseReward(reward_model, policy_tokenizer, shaping, weights)
    out = reward(prompts, token_ids)
    assert set(out.attributions) == set(SOURCES)
    for name, per_response in out.attributions.items():
        for ids, credit in zip(token_ids, per_response, strict=True):
            assert credit.shape == (len(ids),), name
            assert np.all(np.isfinite(credit)), name
    for ids, dense, r in zip(token_ids, out.dense, out.scores, strict=True):
        assert dense.shape == (len(ids),)
        assert dense.sum() == pytest.approx(r, abs=1e-6)
    attention = out.attributions["attention"]
    for credit in attention[1:]:
        assert credit.sum() == pytest.approx(1.0, abs=1e-6)
    assert {f"{name}_seconds" for name in SOURCES} <= set(out.timings)


def test_every_source_on_a_causal_reward_model(policy_tokenizer) -> None:

    reward_model = tiny_causal_reward_model()
    batch = scored_batch(reward_model, policy_tokenizer, PROMPTS, RESPONSES)
    options = {"shap": {"max_evals": 10}, "lime": {"num_samples": 10}, "log_ratio": LOG_RATIO_OPTIONS}
    for name in SOURCES:
        credits = build_explainer(name, reward_model, **options.get(name, {})).explain(batch)
        for offsets, credit in zip(batch.response_offsets, credits, strict=True):
            assert credit.shape == (len(offsets),), name
            assert np.all(np.isfinite(credit)), name
            assert np.any(credit != 0), name


def test_nan_reward_names_the_sample(policy_tokenizer) -> None:
    from dense_reward.shaping import ShapingError

    tokenizer = word_level_tokenizer()
    module = AdditiveRewardModel(len(tokenizer), [tokenizer.pad_token_id, tokenizer.mask_token_id])
    with torch.no_grad():
        module.embed.weight[tokenizer.convert_tokens_to_ids("awful")] = float("nan")
    reward_model = RewardModel(module, tokenizer, RewardModelSpec(path="additive-nan"))
    eos = policy_tokenizer.eos_token_id
    responses = [policy_tokenizer.encode(text) + [eos] for text in [" good day", " a nice day", " awful day"]]
    reward = DenseReward(reward_model, policy_tokenizer, ShapingConfig(sources=["sparse"]), {"sparse": 1.0})
    with pytest.raises(ShapingError, match=r"reward of sample 2 is nan.*awful day"):
        reward(["p", "q", "r"], responses)
