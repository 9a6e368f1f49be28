"""`integrated_gradients`: exact on an additive RM, complete on a real encoder RM; `gradient` is gone.

Integrated gradients satisfy completeness: the credits of a response sum to r(x) - r(baseline), where
the baseline replaces every response token by [MASK] and keeps the prompt and special tokens. On the
additive RM ([MASK] is worth 0) that is each token's own value; on the tiny BERT RM the baseline
score is measured independently, by scoring the token ids with [MASK] in the response's place.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dense_reward.attribution import ScoredBatch, build_explainer, policy_token_offsets
from dense_reward.attribution.embeddings import baseline_token_id
from dense_reward.config import ConfigError, ModelSpec, RewardModelSpec, ShapingConfig
from dense_reward.models import load_tokenizer
from dense_reward.reward_model import RewardModel
from tests.support.reward_models import AdditiveRewardModel, tiny_causal_reward_model, word_level_tokenizer

PROMPTS = ["Tell me about your day.", "What do you think?", "Please help."]
RESPONSES = [" It was a good day, thank you!", " I think it is very important.", " Sure"]


@pytest.fixture(scope="module")
def policy_tokenizer():
    return load_tokenizer(ModelSpec(path="builtin:tiny-gpt2"))


def scored_batch(reward_model: RewardModel, policy_tokenizer, prompts=PROMPTS, responses=RESPONSES) -> ScoredBatch:
    eos = policy_tokenizer.eos_token_id
    decoded = [policy_token_offsets(policy_tokenizer, policy_tokenizer.encode(r) + [eos]) for r in responses]
    texts = [text for text, _ in decoded]
    scores = reward_model.score(prompts, texts).double().numpy()
    return ScoredBatch(prompts, texts, [offsets for _, offsets in decoded], scores)


def baseline_scores(reward_model: RewardModel, batch: ScoredBatch, baseline: str = "mask") -> np.ndarray:
    """(B,) scores of the inputs with every response token replaced by the baseline token, by token ids."""
    token = baseline_token_id(reward_model, baseline)
    sequences = []
    for item in reward_model.encode(batch.prompts, batch.responses):
        ids = list(item.input_ids)
        ids[item.response_start : item.response_end] = [token] * item.response_length
        sequences.append(ids)
    return reward_model.score_ids(sequences)


@pytest.mark.parametrize("n_steps", [1, 8])
def test_integrated_gradients_are_the_token_values_of_an_additive_rm(policy_tokenizer, n_steps: int) -> None:
    tokenizer = word_level_tokenizer()
    module = AdditiveRewardModel(len(tokenizer), [tokenizer.pad_token_id, tokenizer.mask_token_id])
    reward_model = RewardModel(module, tokenizer, RewardModelSpec(path="additive", batch_size=2))
    batch = scored_batch(reward_model, policy_tokenizer)
    explainer = build_explainer("integrated_gradients", reward_model, n_steps=n_steps)
    credits = explainer.credit(batch)
    # Completeness: the baseline keeps the prompt's (and [CLS]/[SEP]'s) part of the score, [MASK] adds 0.
    differences = batch.scores - baseline_scores(reward_model, batch)
    for response, credit, difference in zip(batch.responses, credits, differences, strict=True):
        values = module.token_values(tokenizer(response, add_special_tokens=False)["input_ids"])
        np.testing.assert_allclose(credit.values, values, atol=1e-5)
        assert credit.values.sum() == pytest.approx(difference, abs=1e-4)
    np.testing.assert_allclose(explainer.last_convergence_delta, 0.0, atol=1e-4)
    # On policy tokens the credit keeps its total.
    for credit, dense in zip(credits, explainer.explain(batch), strict=True):
        assert dense.sum() == pytest.approx(credit.values.sum(), abs=1e-6)


@pytest.mark.parametrize("baseline", ["mask", "pad", "zero"])
def test_integrated_gradients_are_complete_on_a_bert_reward_model(tiny_rm_spec, policy_tokenizer, baseline: str) -> None:
    reward_model = RewardModel.from_spec(tiny_rm_spec)
    # A randomly initialised BERT's score barely depends on its input (differences ~1e-4, as small as the
    # integration error); a 1000x head makes them ~1e-2..1e-1, so completeness is checked well above that error.
    with torch.no_grad():
        reward_model.model.classifier.weight.mul_(1000.0)
    batch = scored_batch(reward_model, policy_tokenizer)
    explainer = build_explainer("integrated_gradients", reward_model, n_steps=32, baseline=baseline)
    totals = np.array([credit.values.sum() for credit in explainer.credit(batch)])  # (B,)
    assert np.all(np.abs(totals) > 1e-3)
    if baseline != "zero":  # a token's embedding: the baseline can be scored as token ids
        differences = batch.scores - baseline_scores(reward_model, batch, baseline)
        np.testing.assert_allclose(totals, differences, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(explainer.last_convergence_delta, 0.0, atol=1e-4)  # float32 sums: ~1e-5


def test_the_removed_gradient_source_is_refused_with_the_reason(tiny_rm_spec) -> None:
    """`gradient` (first-order credit) ranked tokens worse than integrated gradients on both tasks and is gone."""
    with pytest.raises(ValueError, match=r"shaping\.sources: unknown source\(s\) \['gradient'\].*integrated_gradients with n_steps 2"):
        ShapingConfig(sources=["sparse", "gradient"])
    with pytest.raises(ValueError, match=r"gradient\s+Extra inputs are not permitted"):
        ShapingConfig(gradient={"baseline": "mask"})
    with pytest.raises(ValueError, match="unknown attribution source 'gradient'"):
        build_explainer("gradient", RewardModel.from_spec(tiny_rm_spec))


def test_causal_rm_without_a_mask_token_uses_the_pad_embedding(policy_tokenizer) -> None:
    reward_model = tiny_causal_reward_model()
    assert reward_model.tokenizer.mask_token_id is None
    assert baseline_token_id(reward_model, "mask") == reward_model.tokenizer.pad_token_id
    batch = scored_batch(reward_model, policy_tokenizer)
    credits = build_explainer("integrated_gradients", reward_model, n_steps=16).credit(batch)
    totals = np.array([credit.values.sum() for credit in credits])
    np.testing.assert_allclose(totals, batch.scores - baseline_scores(reward_model, batch), atol=1e-4)


def test_bad_options_name_the_config_field(tiny_rm_spec) -> None:
    reward_model = RewardModel.from_spec(tiny_rm_spec)
    with pytest.raises(ValueError, match="shaping.integrated_gradients.baseline"):
        build_explainer("integrated_gradients", reward_model, baseline="unk")
    with pytest.raises(ValueError, match="shaping.integrated_gradients.n_steps"):
        build_explainer("integrated_gradients", reward_model, n_steps=0)
    with pytest.raises(ValueError, match="integrated_gradients.n_steps"):
        ShapingConfig(integrated_gradients={"n_steps": 0})
    assert issubclass(ConfigError, ValueError)
