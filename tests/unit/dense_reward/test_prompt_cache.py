"""The prompt cache of causal reward models: cached scores equal plain scores, and the prompt is run once.

Both a GPT-2 RM (learned absolute positions) and a Llama RM (rotary positions, grouped-query
attention) on the tiny byte-level BPE tokenizer, which has no mask token, so masked tokens are
removed and perturbed sequences differ in length (right padding of the continuations). Prompts of
different lengths in one batch exercise the left-padded stacking of cached prompts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from dense_reward.attribution import ScoredBatch, build_explainer, policy_token_offsets
from dense_reward.attribution.batching import Scorer
from dense_reward.config import ModelSpec, RewardModelSpec
from dense_reward.models import load_tokenizer
from dense_reward.prompt_cache import PromptCache
from dense_reward.reward_model import RewardModel
from tests.support.reward_models import tiny_causal_reward_model, tiny_llama_reward_model

BUILDERS: dict[str, Callable[..., RewardModel]] = {"gpt2": tiny_causal_reward_model, "llama": tiny_llama_reward_model}
PROMPTS = [
    "Tell me about your day, and then tell me about the week before it, please.",
    "What do you think?",
    "Please help.",
    "What do you think?",
]
RESPONSES = [" It was a good day, thank you!", " I think it is very important to be kind.", " Sure", " No."]


@pytest.fixture(scope="module", params=list(BUILDERS))
def causal_rm(request) -> RewardModel:
    return BUILDERS[request.param](batch_size=8)


@pytest.fixture(scope="module")
def batch(causal_rm: RewardModel) -> ScoredBatch:
    policy = load_tokenizer(ModelSpec(path="builtin:tiny-gpt2"))
    decoded = [policy_token_offsets(policy, policy.encode(r) + [policy.eos_token_id]) for r in RESPONSES]
    texts = [text for text, _ in decoded]
    scores = causal_rm.score(PROMPTS, texts).double().numpy()
    return ScoredBatch(list(PROMPTS), texts, [offsets for _, offsets in decoded], scores)


class ForwardRecorder:
    """Records every model call (a real forward pre-hook): its `input_ids` shape (B, T), whether it
    continues a cache, and whether it builds one (a prompt being encoded)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls: list[tuple[int, int, bool, bool]] = []
        self._handle = model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, _module, _args, kwargs) -> None:
        rows, width = kwargs["input_ids"].shape
        self.calls.append((rows, width, kwargs.get("cache") is not None, bool(kwargs.get("use_cache"))))

    def __enter__(self) -> ForwardRecorder:
        return self

    def __exit__(self, *_exc) -> None:
        self._handle.remove()


def test_cached_scores_equal_plain_scores_for_prompts_of_different_lengths(causal_rm: RewardModel) -> None:
    assert causal_rm.supports_prompt_cache, causal_rm.prompt_cache_problem
    items = causal_rm.encode(PROMPTS, RESPONSES)
    assert len({item.response_start for item in items}) >= 3
    rng = np.random.default_rng(0)
    sequences, prompt_lengths = [], []
    for item in items:
        start = item.response_start
        sequences.append(item.input_ids[:start])  # the prompt alone: its last position's score
        for _ in range(5):
            keep = rng.random(item.response_length) < 0.6
            response = [t for t, on in zip(item.input_ids[start:], keep, strict=True) if on]
            sequences.append(item.input_ids[:start] + response)
        prompt_lengths += [start] * 6
    cache = PromptCache(causal_rm)
    cached = cache.score(sequences, prompt_lengths)
    np.testing.assert_allclose(cached, causal_rm.score_ids(sequences), rtol=0, atol=1e-5)
    # Four prompts, two of them the same text: three distinct prompts run through the model.
    assert cache.prompts_encoded == len(cache) == 3
    cache.score(sequences[:4], prompt_lengths[:4])
    assert cache.prompts_encoded == 3

    per_position = cache.position_scores([item.input_ids for item in items], [i.response_start for i in items])
    for item, scores in zip(items, causal_rm.position_scores(items), strict=True):
        assert per_position[items.index(item)].shape == (len(item.input_ids),)
        np.testing.assert_allclose(per_position[items.index(item)], scores, rtol=0, atol=1e-5)


def test_bad_prompt_lengths_are_refused(causal_rm: RewardModel) -> None:
    cache = PromptCache(causal_rm)
    with pytest.raises(ValueError, match="prompt length"):
        cache.score([[5, 6, 7]], [0])
    with pytest.raises(ValueError, match="prompt length"):
        cache.score([[5, 6, 7]], [4])
    with pytest.raises(ValueError, match="2 sequences but 1 prompt lengths"):
        cache.score([[5, 6], [5, 7]], [1])


@pytest.mark.parametrize("source, options", [("shap", {"max_evals": 24}), ("lime", {"num_samples": 24})])
@pytest.mark.parametrize("batched", [True, False])
def test_perturbation_sources_give_the_same_credit_with_the_prompt_cache(
    causal_rm: RewardModel, batch: ScoredBatch, source: str, options: dict, batched: bool
) -> None:
    plain = build_explainer(source, causal_rm, **options, batched=batched, prompt_cache=False).credit(batch)
    with ForwardRecorder(causal_rm.model) as recorder:
        cached = build_explainer(source, causal_rm, **options, batched=batched).credit(batch)
    for ours, reference in zip(cached, plain, strict=True):
        assert ours.spans == reference.spans
        np.testing.assert_allclose(ours.values, reference.values, rtol=0, atol=1e-5)
    # Each distinct prompt is encoded once; every other forward reads only response and suffix tokens.
    items = causal_rm.encode(batch.prompts, batch.responses)
    encoded = [(rows, width) for rows, width, continues, builds in recorder.calls if builds and not continues]
    continued = [width for _, width, continues, _ in recorder.calls if continues]
    assert sum(rows for rows, _ in encoded) == len(set(batch.prompts))
    assert continued and max(continued) <= max(len(item.input_ids) - item.response_start for item in items)
    assert len(encoded) + len(continued) == len(recorder.calls)


def test_redistribution_reads_a_shared_prompt_once(causal_rm: RewardModel, batch: ScoredBatch) -> None:
    plain = build_explainer("redistribution", causal_rm, prompt_cache=False).credit(batch)
    before = causal_rm.sequences_scored
    cached = build_explainer("redistribution", causal_rm).credit(batch)
    # Three distinct prompts once each, then the four responses as continuations.
    assert causal_rm.sequences_scored - before == 3 + 4
    for ours, reference in zip(cached, plain, strict=True):
        np.testing.assert_allclose(ours.values, reference.values, rtol=0, atol=1e-5)


def test_encoder_rm_keeps_the_plain_path(tiny_rm_spec: RewardModelSpec) -> None:
    encoder = RewardModel.from_spec(tiny_rm_spec)
    assert not encoder.supports_prompt_cache
    assert "not a causal reward model" in encoder.prompt_cache_problem
    assert Scorer(encoder).prompt_cache is None
    with pytest.raises(ValueError, match="causal reward model"):
        PromptCache(encoder)


def test_a_sliding_window_rm_fails_the_probe_and_keeps_the_plain_path() -> None:
    from transformers import MistralConfig, MistralForSequenceClassification

    tokenizer = load_tokenizer(ModelSpec(path="builtin:tiny-gpt2"), padding_side="right")
    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, sliding_window=2, num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    config._attn_implementation = "eager"
    model = MistralForSequenceClassification(config).eval().requires_grad_(False)
    reward_model = RewardModel(model, tokenizer, RewardModelSpec(path="sliding-rm", max_length=128))
    assert reward_model.is_causal
    assert not reward_model.supports_prompt_cache
    assert reward_model.prompt_cache_problem
    assert Scorer(reward_model).prompt_cache is None
