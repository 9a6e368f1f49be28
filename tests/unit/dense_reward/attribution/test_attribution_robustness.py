"""Inputs that broke attribution: tiny responses, multi-byte characters, failing samples, tied scores.

Each test names the fault it guards against (issue 16 items 1, 2 and 6), on real tiny models: a
WordPiece encoder RM (with a mask token) and a causal RM on a byte-level BPE tokenizer (without).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dense_reward.attribution import ScoredBatch, build_explainer, policy_token_offsets
from dense_reward.attribution.base import ExplanationError
from dense_reward.attribution.batching import Scorer
from dense_reward.attribution.perturbation import Features, feature_groups
from dense_reward.attribution.shap_source import contiguous_tree
from dense_reward.config import ModelSpec, RewardModelSpec, ShapingConfig
from dense_reward.models import load_tokenizer
from dense_reward.reward_model import RewardModel
from dense_reward.shaping import NORMALIZERS, DenseReward, shape
from dense_reward.simplex import SOURCES
from tests.support.reward_models import AdditiveRewardModel, tiny_causal_reward_model, word_level_tokenizer
from tests.support.sources import LOG_RATIO_OPTIONS, LOG_RATIO_SECTION

OPTIONS = {"shap": {"max_evals": 12}, "lime": {"num_samples": 12}, "log_ratio": LOG_RATIO_OPTIONS}
EMOJI_REPLIES = [" Great job 👍 谢谢！", "👍谢谢", " Thanks 🙏🏽, naïve café", "好"]


@pytest.fixture(scope="module")
def policy_tokenizer():
    return load_tokenizer(ModelSpec(path="builtin:tiny-gpt2"))


@pytest.fixture(scope="module")
def reward_models(tiny_rm_spec: RewardModelSpec) -> dict[str, RewardModel]:
    return {"encoder": RewardModel.from_spec(tiny_rm_spec), "causal": tiny_causal_reward_model()}


def policy_batch(reward_model: RewardModel, policy_tokenizer, token_ids: list[list[int]]) -> ScoredBatch:
    decoded = [policy_token_offsets(policy_tokenizer, ids) for ids in token_ids]
    texts = [text for text, _ in decoded]
    prompts = [f"Prompt {i}" for i in range(len(texts))]
    scores = reward_model.score(prompts, texts).double().numpy()
    return ScoredBatch(prompts, texts, [offsets for _, offsets in decoded], scores)


class RecordingScorer(Scorer):
    """Scores right away and keeps every sequence it was asked to score."""

    def __init__(self, reward_model: RewardModel) -> None:
        super().__init__(reward_model)
        self.sequences: list[list[int]] = []
        self.prompt_lengths: set[int] = set()

    def score(self, sequences, prompt_length: int = 0):
        self.sequences.extend(list(s) for s in sequences)
        self.prompt_lengths.add(prompt_length)
        return super().score(sequences, prompt_length)


# --------------------------------------------------------------------------------------------------
# item 1: 0- and 1-token responses; a failing explanation names its sample
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["encoder", "causal"])
@pytest.mark.parametrize("source", SOURCES)
def test_every_source_handles_empty_and_one_token_responses(
    reward_models, policy_tokenizer, kind: str, source: str
) -> None:
    reward_model = reward_models[kind]
    eos = policy_tokenizer.eos_token_id
    one = policy_tokenizer.encode("a")
    assert len(one) == 1
    token_ids = [[eos], one + [eos], one, policy_tokenizer.encode(" ok") + [eos]]
    batch = policy_batch(reward_model, policy_tokenizer, token_ids)
    assert reward_model.encode(batch.prompts[1:2], batch.responses[1:2])[0].response_length == 1
    credits = build_explainer(source, reward_model, **OPTIONS.get(source, {})).explain(batch)
    for ids, credit in zip(token_ids, credits, strict=True):
        assert credit.shape == (len(ids),)
        assert np.all(np.isfinite(credit))


def test_shap_of_a_one_token_response_is_the_whole_difference(reward_models, policy_tokenizer) -> None:
    reward_model = reward_models["causal"]
    batch = policy_batch(reward_model, policy_tokenizer, [policy_tokenizer.encode("a")])
    (item,) = reward_model.encode(batch.prompts, batch.responses)
    features = Features.of(item, reward_model.tokenizer.mask_token_id)
    full, masked = reward_model.score_ids([features.perturb([True]), features.perturb([False])])
    (credit,) = build_explainer("shap", reward_model, max_evals=8).explain(batch)
    assert credit.sum() == pytest.approx(full - masked, abs=1e-6)
    assert full - masked != 0.0


class PoisonedRewardModel(AdditiveRewardModel):
    """The additive RM, except that a forward holding the `poison` token fails."""

    def __init__(self, vocab_size: int, zero_ids: list[int], poison: int) -> None:
        super().__init__(vocab_size, zero_ids)
        self.poison = poison

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_attentions=False):
        if input_ids is not None:
            poisoned = bool((input_ids == self.poison).any())
        else:  # a source fed embeddings: a poisoned row holds the poison token's embedding
            poisoned = bool((inputs_embeds == self.embed.weight[self.poison]).all(dim=-1).any())
        if poisoned:
            raise RuntimeError("cannot score this input")
        return super().forward(input_ids, attention_mask, inputs_embeds, output_attentions)


@pytest.mark.parametrize(
    ("source", "batched"), [("shap", True), ("shap", False), ("lime", True)]
)
def test_a_failing_explanation_names_the_sample_and_the_source(
    policy_tokenizer, source: str, batched: bool
) -> None:
    tokenizer = word_level_tokenizer()
    poison = tokenizer.convert_tokens_to_ids("awful")
    module = PoisonedRewardModel(len(tokenizer), [tokenizer.pad_token_id, tokenizer.mask_token_id], poison)
    reward_model = RewardModel(module, tokenizer, RewardModelSpec(path="poisoned"))
    eos = policy_tokenizer.eos_token_id
    responses = [" good day", " a nice day", " an awful day", " awful"]
    token_ids = [policy_tokenizer.encode(r) + [eos] for r in responses]
    decoded = [policy_token_offsets(policy_tokenizer, ids) for ids in token_ids]
    # Scores as if the RM had read the responses; only the explanation's own forwards fail.
    batch = ScoredBatch(["p"] * 4, [t for t, _ in decoded], [o for _, o in decoded], np.ones(4))
    options = {**OPTIONS.get(source, {}), **({"batched": batched} if source in ("shap", "lime") else {})}
    with pytest.raises(
        ExplanationError, match=rf"source '{source}' failed on sample 2 \(' an awful day'\)"
    ) as info:
        build_explainer(source, reward_model, **options).explain(batch)
    assert info.value.sample == 2 and info.value.source == source
    assert "cannot score this input" in str(info.value)


# --------------------------------------------------------------------------------------------------
# item 2: several byte-level tokens share the span of one multi-byte character
# --------------------------------------------------------------------------------------------------


def test_tokens_with_one_span_form_one_feature() -> None:
    # A 4-byte emoji as three byte tokens with the same span, then a token that overlaps it.
    offsets = [(0, 1), (1, 3), (1, 3), (1, 3), (2, 4), (4, 5), (5, 5), (5, 6)]
    assert feature_groups(offsets) == [(0, 1), (1, 5), (5, 7), (7, 8)]
    assert feature_groups([]) == []


def test_byte_level_tokens_of_one_character_share_a_span(reward_models) -> None:
    """The fault itself: a byte-level RM tokenizer gives one emoji several tokens with one span."""
    tokenizer = reward_models["causal"].tokenizer
    offsets = tokenizer("👍谢", add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert len(offsets) > 2 and len(set(map(tuple, offsets))) == 2


@pytest.mark.parametrize("source", ["shap", "lime"])
@pytest.mark.parametrize("response", EMOJI_REPLIES)
def test_perturbations_recombine_the_real_text(reward_models, source: str, response: str) -> None:
    reward_model = reward_models["causal"]
    tokenizer = reward_model.tokenizer
    assert tokenizer.mask_token_id is None  # masked features are removed
    (item,) = reward_model.encode(["Say thanks."], [response])
    features = Features.of(item, None)
    assert len(features) < item.response_length  # some tokens were merged
    spans = features.spans
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))  # distinct characters
    scorer = RecordingScorer(reward_model)
    explainer = build_explainer(source, reward_model, **OPTIONS[source])
    explainer.explain_one(features, scorer)
    assert len(scorer.sequences) >= (2 if len(features) == 1 else 8)
    prefix = item.input_ids[: item.response_start]
    assert scorer.prompt_lengths == {len(prefix)}  # the kept prompt, which a causal RM encodes once
    pieces = [item.input_ids[item.response_start + a : item.response_start + b] for a, b in features.groups]
    for sequence in scorer.sequences:
        assert sequence[: len(prefix)] == prefix
        rest, kept = sequence[len(prefix) :], []
        for index, piece in enumerate(pieces):
            if rest[: len(piece)] == piece:
                rest, kept = rest[len(piece) :], [*kept, index]
        assert rest == []  # nothing but whole features of the real response, in order
        text = tokenizer.decode(sequence[len(prefix) :])
        assert text == "".join(response[spans[i][0] : spans[i][1]] for i in kept)
        assert "\ufffd" not in text


@pytest.mark.parametrize("kind", ["encoder", "causal"])
def test_shap_and_lime_explain_emoji_replies_and_conserve_credit(
    reward_models, policy_tokenizer, kind: str
) -> None:
    reward_model = reward_models[kind]
    eos = policy_tokenizer.eos_token_id
    token_ids = [policy_tokenizer.encode(r) + [eos] for r in EMOJI_REPLIES]
    batch = policy_batch(reward_model, policy_tokenizer, token_ids)
    assert batch.responses == EMOJI_REPLIES
    items = reward_model.encode(batch.prompts, batch.responses)
    mask_id = reward_model.tokenizer.mask_token_id
    masked = reward_model.score_ids(
        [Features.of(item, mask_id).perturb([False] * len(Features.of(item, mask_id))) for item in items]
    )
    for source in ("shap", "lime"):
        explainer = build_explainer(source, reward_model, **OPTIONS[source])
        rm_credit = explainer.credit(batch)
        policy_credit = explainer.explain(batch)
        for i, (credit, dense) in enumerate(zip(rm_credit, policy_credit, strict=True)):
            assert dense.shape == (len(token_ids[i]),)
            # Alignment moves every feature's credit onto policy tokens.
            assert dense.sum() == pytest.approx(credit.values.sum(), abs=1e-9)
            if source == "shap":  # efficiency: Owen values add up to f(response) - f(all masked)
                assert credit.values.sum() == pytest.approx(batch.scores[i] - masked[i], abs=1e-5)


# --------------------------------------------------------------------------------------------------
# item 6: batched SHAP is reproducible when RM scores tie
# --------------------------------------------------------------------------------------------------


class TiedRewardModel(AdditiveRewardModel):
    """The additive RM rounded to whole numbers, so many perturbations score the same (like bf16 scores)."""

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_attentions=False):
        logits = super().forward(input_ids, attention_mask, inputs_embeds, output_attentions).logits
        return SimpleNamespace(logits=torch.round(logits))


def test_batched_shap_gives_the_same_credit_for_the_same_seed_when_scores_tie(policy_tokenizer) -> None:
    tokenizer = word_level_tokenizer()
    module = TiedRewardModel(len(tokenizer), [tokenizer.pad_token_id, tokenizer.mask_token_id])
    reward_model = RewardModel(module, tokenizer, RewardModelSpec(path="tied", batch_size=16))
    eos = policy_tokenizer.eos_token_id
    texts = [
        " it was a good day and the world is very kind to us today",
        " i think this is very important for the team and the company",
        " sure, thank you for the help with the book and the story",
        " the city is big and the house is small but the room is nice",
    ]
    batch = policy_batch(reward_model, policy_tokenizer, [policy_tokenizer.encode(t) + [eos] for t in texts])

    def run(global_seed: int, workers: int | None, seed: int = 0) -> list[np.ndarray]:
        np.random.seed(global_seed)  # whatever else in the process did to the global generator
        return build_explainer("shap", reward_model, max_evals=16, seed=seed, workers=workers).explain(batch)

    first = run(1, None)
    for again in (run(2, None), run(3, 2), run(4, 1)):
        for a, b in zip(first, again, strict=True):
            np.testing.assert_array_equal(a, b)
    # The ties matter: another seed breaks them differently.
    assert any(not np.array_equal(a, b) for a, b in zip(first, run(1, None, seed=5), strict=True))
    # The global generator the rest of the process sees is left where it was.
    np.random.seed(7)
    state = np.random.get_state()[1].copy()
    build_explainer("shap", reward_model, max_evals=16).explain(batch)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_contiguous_tree_is_a_balanced_linkage() -> None:
    tree = contiguous_tree(5)
    assert tree.shape == (4, 4)
    assert tree[-1, 3] == 5 and tree[-1, 2] == 1.0  # the root holds every feature
    # Children are earlier rows or features; sizes add up.
    for row, (left, right, _, count) in enumerate(tree):
        assert left < 5 + row and right < 5 + row
        size = [1 if int(c) < 5 else tree[int(c) - 5, 3] for c in (left, right)]
        assert sum(size) == count


# --------------------------------------------------------------------------------------------------
# property: any unicode response, every source, every normaliser
# --------------------------------------------------------------------------------------------------

AWKWARD = list("👍🙏🏽谢好日本é") + ["e\u0301", "\u200d", "\u0301", " ", "\n", "\t", "\x00", "\ufeff", "ﬁ", "İ"]
PIECE = st.one_of(st.characters(codec="utf-8", exclude_categories=("Cs",)), st.sampled_from(AWKWARD))
REPLIES = st.lists(st.lists(PIECE, max_size=10).map("".join), min_size=1, max_size=3)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(replies=REPLIES, kind=st.sampled_from(["encoder", "causal"]), normalize=st.sampled_from(NORMALIZERS))
@example(replies=["", "a", "👍谢谢"], kind="causal", normalize="signed")
@example(replies=["e\u0301\u0301", " 好"], kind="encoder", normalize="softmax")
def test_any_unicode_reply_through_every_source_and_normaliser(
    reward_models, policy_tokenizer, replies: list[str], kind: str, normalize: str
) -> None:
    reward_model = reward_models[kind]
    eos = policy_tokenizer.eos_token_id
    token_ids = [policy_tokenizer.encode(reply)[:16] + [eos] for reply in replies]
    shaping = ShapingConfig(
        sources=list(SOURCES), normalize=normalize, shap={"max_evals": 8}, lime={"num_samples": 8},
        log_ratio=LOG_RATIO_SECTION,
    )
    weights = {source: 1.0 / len(SOURCES) for source in SOURCES}
    reward = DenseReward(reward_model, policy_tokenizer, shaping, weights, skip_zero_weight=False)
    out = reward([f"Prompt {i}" for i in range(len(replies))], token_ids)
    assert set(out.attributions) == set(SOURCES)
    for credits in out.attributions.values():
        for ids, credit in zip(token_ids, credits, strict=True):
            assert credit.shape == (len(ids),)
            assert np.all(np.isfinite(credit))
    for ids, dense, r in zip(token_ids, out.dense, out.scores, strict=True):
        assert dense.shape == (len(ids),)
        assert dense.sum() == pytest.approx(r, abs=1e-6)
    # The shaped reward is the mix of the sources, each conserving r on its own.
    again = shape(out.attributions, weights, out.scores, normalize, shaping.tau)
    for a, b in zip(again, out.dense, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# memory: an explanation leaves nothing of its reward model behind
# --------------------------------------------------------------------------------------------------

FIRST_USE = """
import gc, sys, weakref
from dense_reward.attribution import ScoredBatch, build_explainer, policy_token_offsets
from dense_reward.config import ModelSpec
from dense_reward.models import load_tokenizer
from tests.support.reward_models import tiny_causal_reward_model

assert not {"shap", "lime", "captum"} & set(sys.modules), "imported before the explainers"

def explain():
    reward_model = tiny_causal_reward_model()
    tokenizer = load_tokenizer(ModelSpec(path="builtin:tiny-gpt2"))
    decoded = [policy_token_offsets(tokenizer, tokenizer(t)["input_ids"]) for t in (" a good day", " bad")]
    texts = [text for text, _ in decoded]
    scores = reward_model.score(["P", "Q"], texts).double().numpy()
    batch = ScoredBatch(["P", "Q"], texts, [offsets for _, offsets in decoded], scores)
    for source, options in (("shap", {"max_evals": 8}), ("lime", {"num_samples": 8}), ("integrated_gradients", {})):
        build_explainer(source, reward_model, **options).explain(batch)
    return weakref.ref(reward_model.model)

model = explain()
gc.collect()
print("alive" if model() is not None else "freed")
"""


def test_first_use_of_shap_lime_and_captum_keeps_no_reward_model_alive() -> None:
    # shap records the ImportErrors of its optional dependencies with their tracebacks; imported first
    # inside an explanation's thread, those held every frame below, the reward model included, until the
    # process ended (a reused Ray worker's next trial started ~450 MiB heavier). A fresh process: the
    # first import is the point.
    import subprocess
    import sys

    from tests.support.paths import ROOT

    done = subprocess.run([sys.executable, "-c", FIRST_USE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "freed"
