"""Shaping invariants: sums to r, sparse and ABC special cases, edge lengths, clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dense_reward.attribution.align import policy_token_offsets
from dense_reward.config import RewardModelSpec, ShapingConfig
from dense_reward.errors import ConfigWarning
from dense_reward.models import load_tokenizer
from dense_reward.reward_model import RewardModel
from dense_reward.shaping import (
    CONSTANT_CREDIT,
    NEAR_EVEN_SPREAD,
    NORMALIZERS,
    DenseReward,
    RewardOutput,
    ShapingError,
    normalize_credit,
    shape,
    spread,
)
from dense_reward.simplex import SOURCES, WeightsError, check_weights
from tests.support.reward_models import AdditiveRewardModel, word_level_tokenizer

CREDIT = arrays(np.float64, st.integers(1, 30), elements=st.floats(-50, 50, allow_nan=False))


@settings(max_examples=80, deadline=None)
@given(credit=CREDIT, method=st.sampled_from(NORMALIZERS), tau=st.floats(0.05, 10.0))
def test_every_normaliser_gives_unit_mass(credit: np.ndarray, method: str, tau: float) -> None:
    unit = normalize_credit(credit, method, tau)
    assert unit.shape == credit.shape
    assert np.all(np.isfinite(unit))
    assert unit.sum() == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    method=st.sampled_from(NORMALIZERS),
    n=st.integers(1, 6),
    weights_raw=arrays(np.float64, 4, elements=st.floats(0.0, 1.0)),
)
def test_dense_rewards_sum_to_r(data, method: str, n: int, weights_raw: np.ndarray) -> None:
    sources = ["sparse", "attention", "shap", "lime"]
    if weights_raw.sum() == 0:
        weights_raw = np.array([1.0, 0, 0, 0])
    weights = dict(zip(sources, weights_raw / weights_raw.sum(), strict=True))
    lengths = data.draw(st.lists(st.integers(0, 20), min_size=n, max_size=n))
    rewards = data.draw(arrays(np.float64, n, elements=st.floats(-10, 10)))
    rng = np.random.default_rng(0)
    attributions = {
        s: [np.abs(rng.normal(size=t)) if s == "attention" else rng.normal(size=t) for t in lengths] for s in sources
    }
    dense = shape(attributions, weights, rewards, normalize=method, tau=0.7)
    for d, t, r in zip(dense, lengths, rewards, strict=True):
        assert d.shape == (t,)
        if t:
            assert d.sum() == pytest.approx(r, abs=1e-9 * max(1.0, abs(r)))


def test_all_sparse_puts_r_on_the_last_token() -> None:
    attributions = {"sparse": [np.array([0.0, 0.0, 1.0])], "shap": [np.array([5.0, -1.0, 2.0])]}
    dense = shape(attributions, {"sparse": 1.0, "shap": 0.0}, [2.5])
    np.testing.assert_array_equal(dense[0], [0.0, 0.0, 2.5])


def test_abc_weights_equal_the_abc_formula() -> None:
    # Chan et al. (arXiv 2402.00782): r_t = r * (beta * attention_t) + (1 - beta) * r on the last token.
    attention = np.array([0.1, 0.6, 0.3])
    sparse = np.array([0.0, 0.0, 1.0])
    r = -1.7
    dense = shape({"attention": [attention], "sparse": [sparse]}, {"attention": 0.8, "sparse": 0.2}, [r])
    np.testing.assert_allclose(dense[0], r * 0.8 * attention + r * 0.2 * sparse)


def test_zero_length_and_one_token_responses() -> None:
    attributions = {"shap": [np.zeros(0), np.array([3.0])], "sparse": [np.zeros(0), np.array([1.0])]}
    for method in NORMALIZERS:
        dense = shape(attributions, {"shap": 0.5, "sparse": 0.5}, [1.0, -2.0], normalize=method)
        assert dense[0].shape == (0,)
        np.testing.assert_allclose(dense[1], [-2.0])


def test_nan_score_names_the_sample() -> None:
    with pytest.raises(ShapingError, match="sample 2"):
        shape({"sparse": [np.ones(1)] * 3}, {"sparse": 1.0}, [0.0, 1.0, float("nan")])


def test_nan_attribution_names_source_and_sample() -> None:
    with pytest.raises(ShapingError, match=r"sample 1: source 'shap'"):
        shape({"shap": [np.ones(2), np.array([np.nan, 1.0])]}, {"shap": 1.0}, [0.0, 1.0])


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"sparse": 0.5, "shap": 0.4}, "sum to 1"),
        ({"sparse": 1.2, "shap": -0.2}, ">= 0"),
        ({"bogus": 1.0}, "not among the known sources"),
        ({}, "no weights"),
    ],
)
def test_bad_weights_raise_clear_errors(weights: dict[str, float], message: str) -> None:
    with pytest.raises(WeightsError, match=message):
        check_weights(weights)


def test_signed_falls_back_to_sparse_when_credit_cancels() -> None:
    np.testing.assert_array_equal(normalize_credit(np.array([1.0, -1.0, 0.0]), "signed"), [0.0, 0.0, 1.0])
    np.testing.assert_allclose(normalize_credit(np.array([2.0, -1.0]), "signed"), [2.0, -1.0])


def test_softmax_temperature_sharpens() -> None:
    credit = np.array([0.0, 1.0])
    assert normalize_credit(credit, "softmax", 0.1)[1] > normalize_credit(credit, "softmax", 10.0)[1]


@settings(max_examples=60, deadline=None)
@given(credit=CREDIT, scale=st.floats(1e-3, 1e3), tau=st.floats(0.2, 5.0))
def test_scaled_softmax_does_not_depend_on_the_credit_scale(credit: np.ndarray, scale: float, tau: float) -> None:
    sd = credit.std()
    cutoff = CONSTANT_CREDIT * np.abs(credit).max()
    assume(not 0.5 * cutoff < sd < 2 * cutoff)  # not at the constant-credit cut-off itself
    unit = normalize_credit(credit, "scaled-softmax", tau)
    np.testing.assert_allclose(normalize_credit(credit * scale, "scaled-softmax", tau), unit, atol=1e-9)
    if sd > cutoff:
        np.testing.assert_allclose(unit, normalize_credit(credit, "softmax", tau * sd), atol=1e-12)
    else:
        np.testing.assert_allclose(unit, np.full(credit.size, 1 / credit.size))
    # Order kept: more credit, more weight.
    order = np.argsort(credit, kind="stable")
    assert np.all(np.diff(unit[order]) >= -1e-12)


def test_scaled_softmax_keeps_small_credit_apart_where_softmax_evens_it_out() -> None:
    credit = np.array([0.01, -0.02, 0.05, 0.0])  # a [0, 1]-scale reward model's SHAP values
    assert spread(normalize_credit(credit, "softmax", 1.0)) < NEAR_EVEN_SPREAD
    assert spread(normalize_credit(credit, "scaled-softmax", 1.0)) > 0.2
    np.testing.assert_allclose(normalize_credit(np.full(3, 0.7), "scaled-softmax"), np.full(3, 1 / 3))
    # Credit that differs only by rounding is constant, not two tokens far apart.
    np.testing.assert_allclose(normalize_credit(np.array([0.1, 0.1 + 1e-17]), "scaled-softmax"), [0.5, 0.5])


def test_spread_is_zero_for_an_even_split_and_near_one_for_one_token() -> None:
    assert spread(np.full(4, 0.25)) == 0.0
    assert spread(np.eye(10)[3]) == pytest.approx(0.9)
    assert spread(np.zeros(0)) == 0.0
    # signed weights may be negative: their magnitudes are compared, so the spread stays below 1.
    assert spread(np.array([2.0, -1.0])) == pytest.approx(spread(np.array([2 / 3, 1 / 3])))


def test_softmax_that_evens_out_a_source_warns_once_and_scaled_softmax_does_not(
    tiny_rm_spec, tiny_policy_spec
) -> None:
    reward_model = RewardModel.from_spec(tiny_rm_spec)
    tokenizer = load_tokenizer(tiny_policy_spec)
    eos = tokenizer.eos_token_id
    responses = [tokenizer.encode(" Thanks, that helps a lot!") + [eos], tokenizer.encode(" no way, never") + [eos]]
    prompts = ["Say thanks.", "Reply."]
    weights = {"redistribution": 0.5, "sparse": 0.5}
    flat = ShapingConfig(sources=["sparse", "redistribution"], tau=1e4)
    reward = DenseReward(reward_model, tokenizer, flat, weights)
    with pytest.warns(ConfigWarning, match=r"redistribution credit spans about .* softmax at shaping.tau=10000"):
        out = reward(prompts, responses)
    assert set(out.spreads) == {"redistribution"} and out.spreads["redistribution"] < NEAR_EVEN_SPREAD
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        reward(prompts, responses)  # once per source and tau in a process, whichever reward function asks
        DenseReward(reward_model, tokenizer, flat, weights)(prompts, responses)
        shaping = ShapingConfig(sources=["sparse", "redistribution"], normalize="scaled-softmax")
        scaled = DenseReward(reward_model, tokenizer, shaping, weights)
        out = scaled(prompts, responses)
    assert out.spreads["redistribution"] > NEAR_EVEN_SPREAD


def test_dense_reward_on_tiny_models(tiny_rm_spec, tiny_policy_spec) -> None:
    reward_model = RewardModel.from_spec(tiny_rm_spec)
    tokenizer = load_tokenizer(tiny_policy_spec)
    eos = tokenizer.eos_token_id
    responses = [tokenizer.encode(" Thanks, that helps a lot!") + [eos], [eos], tokenizer.encode(" ok")]
    reward = DenseReward(reward_model, tokenizer, ShapingConfig(sources=["sparse"]), {"sparse": 1.0})
    out = reward(["Say thanks.", "Hi", "Reply."], responses)
    assert isinstance(out, RewardOutput)
    direct = reward_model.score(["Say thanks.", "Hi", "Reply."], out.responses).numpy()
    np.testing.assert_allclose(out.scores, direct, rtol=1e-5)
    for ids, dense, r in zip(responses, out.dense, out.scores, strict=True):
        assert dense.shape == (len(ids),)
        assert dense[-1] == pytest.approx(r)
    assert out.responses[1] == ""
    assert {"scoring_seconds", "attribution_seconds"} <= set(out.timings)
    assert out.responses[0] == policy_token_offsets(tokenizer, responses[0])[0]
    empty = reward([], [])
    assert empty.dense == [] and empty.scores.shape == (0,)


def test_dense_reward_from_its_section_defaults_to_sparse(tiny_config, tiny_rm_spec, tiny_policy_spec) -> None:
    reward_model = RewardModel.from_spec(tiny_rm_spec)
    tokenizer = load_tokenizer(tiny_policy_spec)
    reward = DenseReward(reward_model, tokenizer, tiny_config.shaping)
    assert reward.weights == {"sparse": 1.0}
    assert list(reward.explainers) == ["sparse"]
    config = tiny_config.with_overrides({"shaping.attention_query": "final", "shaping.shap.max_evals": 9})
    every = DenseReward(reward_model, tokenizer, config.shaping, skip_zero_weight=False)
    assert every.explainers["attention"].query == "final"
    assert every.explainers["shap"].max_evals == 9
    assert set(SOURCES) >= set(tiny_config.shaping.sources)


def test_attention_comes_from_the_scoring_forward(tiny_rm_spec, tiny_policy_spec) -> None:
    reward_model = RewardModel.from_spec(tiny_rm_spec)
    tokenizer = load_tokenizer(tiny_policy_spec)
    eos = tokenizer.eos_token_id
    responses = [tokenizer.encode(" Thanks, that helps!") + [eos], tokenizer.encode(" no") + [eos]]
    shaping = ShapingConfig(sources=["attention", "sparse"])
    reward = DenseReward(reward_model, tokenizer, shaping, {"attention": 0.8, "sparse": 0.2})
    before = reward_model.sequences_scored
    out = reward(["Say thanks.", "Reply."], responses)
    assert reward_model.sequences_scored - before == 2
    np.testing.assert_allclose(out.scores, reward_model.score(["Say thanks.", "Reply."], out.responses), rtol=1e-5)
    for ids, attention, dense, r in zip(responses, out.attributions["attention"], out.dense, out.scores, strict=True):
        assert attention.shape == (len(ids),) and attention.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(dense, r * (0.8 * attention + 0.2 * np.eye(len(ids))[-1]))


def test_rm_reads_the_raw_prompt_behind_a_policy_chat_template(tiny_policy_spec) -> None:
    # An additive RM counts every word it reads, the chat markup's included (as unknown words).
    rm_tokenizer = word_level_tokenizer()
    module = AdditiveRewardModel(len(rm_tokenizer), [rm_tokenizer.pad_token_id, rm_tokenizer.mask_token_id])
    reward_model = RewardModel(module, rm_tokenizer, RewardModelSpec(path="additive", batch_size=8))
    tokenizer = load_tokenizer(tiny_policy_spec)
    formatted = "<|user|>good day<|assistant|>"
    response = tokenizer.encode(" good day") + [tokenizer.eos_token_id]
    shaping = ShapingConfig(sources=["sparse"])
    plain = DenseReward(reward_model, tokenizer, shaping)(["good day"], [response])
    as_formatted = DenseReward(reward_model, tokenizer, shaping)([formatted], [response])
    raw = DenseReward(reward_model, tokenizer, shaping, raw_prompts={formatted: "good day"})([formatted], [response])
    assert raw.scores[0] == pytest.approx(plain.scores[0], abs=1e-6)
    assert abs(as_formatted.scores[0] - plain.scores[0]) > 1e-3


def test_weights_outside_the_sources_are_refused(tiny_rm_spec, tiny_policy_spec) -> None:
    reward_model = RewardModel.from_spec(tiny_rm_spec)
    tokenizer = load_tokenizer(tiny_policy_spec)
    with pytest.raises(WeightsError, match=r"shaping.weights: source\(s\) \['lime'\] not among the sources"):
        DenseReward(reward_model, tokenizer, ShapingConfig(sources=["attention"]), {"lime": 1.0})
