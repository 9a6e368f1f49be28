"""Alignment of RM-token credit onto policy tokens: spans, overlap splits, conservation."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dense_reward.attribution.align import (
    _offsets_from_prefixes,
    align_credit,
    overlap_matrix,
    policy_token_offsets,
)
from dense_reward.builtin.tiny import WORDS
from dense_reward.config import ModelSpec, RewardModelSpec
from dense_reward.models import load_tokenizer


@cache
def tokenizers():
    """(policy, rm): byte-level BPE and WordPiece, built once per session cache."""
    policy = load_tokenizer(ModelSpec(path="builtin:tiny-gpt2"))
    rm = load_tokenizer(RewardModelSpec(path="builtin:tiny-rm"), padding_side="right")
    return policy, rm


PIECES = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from([" ", "  ", ",", ".", "!", "?", "\n", "é", "naïve", "日本", "🙂", "don't", "x2"]),
    st.text(min_size=1, max_size=4),
)
TEXTS = st.lists(PIECES, min_size=0, max_size=25).map(lambda parts: " ".join(parts))


def test_overlap_splits_by_length() -> None:
    # RM span (0, 4) shares 2 characters with each policy token, so its credit splits evenly.
    weights = overlap_matrix([(0, 4)], [(0, 2), (2, 6)])
    np.testing.assert_allclose(weights, [[0.5, 0.5]])
    credit = align_credit([(0, 4), (4, 6)], np.array([2.0, 1.0]), [(0, 2), (2, 6)])
    np.testing.assert_allclose(credit, [1.0, 2.0])


def test_uncovered_span_goes_to_holder_or_last_token() -> None:
    policy = [(0, 3), (3, 5), (5, 5)]
    # A zero-width span at 4 lies inside token 1; one past the end overlaps nothing.
    credit = align_credit([(4, 4), (9, 12)], np.array([1.0, 5.0]), policy)
    np.testing.assert_allclose(credit, [0.0, 1.0, 5.0])


def test_empty_policy_side_gives_empty_credit() -> None:
    assert align_credit([(0, 2)], np.array([1.0]), []).shape == (0,)
    assert align_credit([], np.zeros(0), [(0, 1), (1, 2)]).tolist() == [0.0, 0.0]


def test_policy_offsets_include_eos_as_empty_span() -> None:
    policy, _ = tokenizers()
    ids = policy.encode(" Hello there, friend!") + [policy.eos_token_id]
    text, offsets = policy_token_offsets(policy, ids)
    assert text == " Hello there, friend!"
    assert len(offsets) == len(ids)
    assert offsets[-1] == (len(text), len(text))
    assert "".join(text[s:e] for s, e in offsets) == text


@settings(max_examples=60, deadline=None)
@given(text=TEXTS, seed=st.integers(0, 2**32 - 1), add_eos=st.booleans())
def test_alignment_conserves_total_across_tokenizers(text: str, seed: int, add_eos: bool) -> None:
    policy, rm = tokenizers()
    ids = policy.encode(text) + ([policy.eos_token_id] if add_eos else [])
    decoded, policy_offsets = policy_token_offsets(policy, ids)
    assert len(policy_offsets) == len(ids)
    # Policy spans tile the decoded text without gaps, and the fast windowed decode agrees with
    # decoding every prefix.
    assert "".join(decoded[s:e] for s, e in policy_offsets) == decoded
    decode = lambda part: policy.decode(part, skip_special_tokens=True, clean_up_tokenization_spaces=False)  # noqa: E731
    assert policy_offsets == _offsets_from_prefixes(ids, decoded, decode)
    rm_spans = [tuple(o) for o in rm(decoded, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
    rng = np.random.default_rng(seed)
    # Spans that overlap no policy token must keep their credit too.
    rm_spans += [(len(decoded), len(decoded)), (len(decoded) + 3, len(decoded) + 7)]
    credit = rng.normal(size=len(rm_spans))
    moved = align_credit(rm_spans, credit, policy_offsets)
    assert moved.shape == (len(ids),)
    if ids:
        assert moved.sum() == pytest.approx(credit.sum(), abs=1e-9)
    else:
        assert moved.size == 0
