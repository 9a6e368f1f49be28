"""Move credit from reward-model tokens onto policy tokens by character overlap.

The RM and the policy tokenise the same response text differently. Both tokenisations are
described by character spans in that text; each policy token takes the credit of every RM span it
overlaps, split in proportion to the overlap length. Credit of an RM span that overlaps no policy
token (a zero-width span, or text the policy tokens do not cover) goes to the policy token holding
its start, else to the last policy token, so the total is always conserved.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def policy_token_offsets(
    tokenizer, token_ids: Sequence[int], window: int = 8
) -> tuple[str, list[tuple[int, int]]]:
    """Decode a policy response and find the character span of each of its tokens.

    Special tokens (EOS) decode to nothing and get an empty span at their position, so they still
    own one entry. Spans are contiguous and cover the whole text: a token that only completes a
    multi-byte character gets the characters its prefix adds.

    Each token's text is what it adds to the decode of the `window` tokens before it (linear in the
    length); when those pieces do not rebuild the full decode exactly (a character split over
    tokens, a decoder that looks further back) every prefix is decoded instead.

    Args:
        tokenizer: the policy tokenizer.
        token_ids: the response token ids, up to and including the first EOS.
        window: tokens of left context used to decode each token.

    Returns:
        (text, offsets): the decoded response and one (start, end) span per token, ``len(token_ids)`` of them.
    """
    ids = [int(i) for i in token_ids]

    def decode(part: list[int]) -> str:
        return tokenizer.decode(part, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    text = decode(ids)
    offsets = _offsets_from_windows(ids, text, decode, window)
    return text, offsets if offsets is not None else _offsets_from_prefixes(ids, text, decode)


def _offsets_from_windows(ids: list[int], text: str, decode, window: int) -> list[tuple[int, int]] | None:
    offsets: list[tuple[int, int]] = []
    end = 0
    for i in range(len(ids)):
        context = ids[max(0, i - window) : i]
        before, after = decode(context), decode(context + [ids[i]])
        if not after.startswith(before):
            return None
        piece = after[len(before) :]
        if text[end : end + len(piece)] != piece:
            return None
        offsets.append((end, end + len(piece)))
        end += len(piece)
    return offsets if end == len(text) else None


def _offsets_from_prefixes(ids: list[int], text: str, decode) -> list[tuple[int, int]]:
    offsets: list[tuple[int, int]] = []
    previous_end = 0
    for length in range(1, len(ids) + 1):
        prefix = decode(ids[:length])
        # A prefix ending inside a multi-byte character decodes to a replacement char: only the
        # part shared with the full text counts.
        end = len(prefix) if text.startswith(prefix) else _common_prefix_length(prefix, text)
        end = max(end, previous_end)
        offsets.append((previous_end, end))
        previous_end = end
    if offsets and previous_end < len(text):
        start, _ = offsets[-1]
        offsets[-1] = (start, len(text))
    return offsets


def _common_prefix_length(a: str, b: str) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def overlap_matrix(
    source_spans: Sequence[tuple[int, int]], target_spans: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Row-stochastic (S, P) matrix: how each source span's credit splits over the target spans.

    Row s is the overlap length of source span s with each target span, divided by its sum; a span
    with no overlap puts its whole row on the target span that contains its start, else the last one.
    """
    n_source, n_target = len(source_spans), len(target_spans)
    weights = np.zeros((n_source, n_target))
    if n_source == 0 or n_target == 0:
        return weights
    source = np.asarray(source_spans, dtype=np.int64).reshape(n_source, 2)
    target = np.asarray(target_spans, dtype=np.int64).reshape(n_target, 2)
    lo = np.maximum(source[:, None, 0], target[None, :, 0])  # (S, P)
    hi = np.minimum(source[:, None, 1], target[None, :, 1])  # (S, P)
    overlap = np.clip(hi - lo, 0, None).astype(np.float64)
    totals = overlap.sum(axis=1)  # (S,)
    covered = totals > 0
    weights[covered] = overlap[covered] / totals[covered, None]
    for row in np.flatnonzero(~covered):
        start = source[row, 0]
        holders = np.flatnonzero((target[:, 0] <= start) & (start < target[:, 1]))
        weights[row, holders[0] if len(holders) else n_target - 1] = 1.0
    return weights


def align_credit(
    rm_spans: Sequence[tuple[int, int]], rm_credit: np.ndarray, policy_offsets: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Policy-token credit from RM-token credit.

    Args:
        rm_spans: (start, end) character span in the response of each RM token (or word).
        rm_credit: (S,) credit of each RM span.
        policy_offsets: (start, end) character span of each policy token, as from `policy_token_offsets`.

    Returns:
        (P,) float64 credit per policy token; it sums to ``rm_credit.sum()`` whenever P > 0.
    """
    rm_credit = np.asarray(rm_credit, dtype=np.float64).reshape(-1)
    if len(rm_spans) != len(rm_credit):
        raise ValueError(f"got {len(rm_spans)} RM spans but {len(rm_credit)} credit values")
    return rm_credit @ overlap_matrix(rm_spans, policy_offsets)  # (S,) @ (S, P) -> (P,)
