"""The demo's gold scorer: VADER, a lexicon of human-rated word valences plus a few grammar rules.

VADER (Hutto & Gilbert, ICWSM 2014, https://github.com/cjhutto/vaderSentiment) scores a text by
summing per-word valences (lexicon rating, adjusted for boosters, negation, capitals and "but") and
squashing the sum into [-1, 1]. The demo reward model is trained to agree with it, so it stands in
for the human judgement an RLHF reward model approximates; its per-word valences are the
ground-truth credit against which attributions can be checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_WORD = re.compile(r"\S+")


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def gold_reward(texts: list[str]) -> np.ndarray:
    """VADER compound score of each text.

    Args:
        texts: B response texts.

    Returns:
        (B,) float64 scores in [-1, 1]; 0 for a text with no sentiment words.
    """
    analyzer = _analyzer()
    return np.array([analyzer.polarity_scores(text)["compound"] for text in texts], dtype=np.float64)


def lexicon() -> dict[str, float]:
    """VADER's lexicon: lower-case token -> mean human valence rating in [-4, 4]."""
    return dict(_analyzer().lexicon)


@dataclass
class WordCredit:
    """Ground-truth credit of one text: one entry per whitespace-separated word.

    `spans[i]` is the (start, end) character span of word i in the text, with the leading and
    trailing punctuation VADER strips left out; `valences[i]` is the valence VADER gives that word
    in context (0 for words outside the lexicon). `total` is what VADER squashes into the compound
    score: the sum of the valences plus the emphasis of `!` and `?`, signed like the sum.
    """

    words: list[str]
    spans: list[tuple[int, int]]
    valences: np.ndarray  # (W,)
    total: float


def word_credit(text: str) -> WordCredit:
    """Per-word VADER valences of `text`, with character spans for aligning them to any tokenizer.

    Follows `SentimentIntensityAnalyzer.polarity_scores` word by word. Emoji are not expanded into
    their descriptions (which would break the character spans), so an emoji gets 0 here.
    """
    from vaderSentiment.vaderSentiment import BOOSTER_DICT, SentiText

    analyzer = _analyzer()
    sentitext = SentiText(text)
    words = sentitext.words_and_emoticons
    matches = list(_WORD.finditer(text))
    if len(matches) != len(words):
        raise ValueError(f"word split of {text!r} disagrees with VADER's ({len(matches)} vs {len(words)})")
    sentiments: list[float] = []
    for i, word in enumerate(words):
        # Boosters and "kind of" modify their neighbours and carry no valence of their own.
        is_modifier = word.lower() in BOOSTER_DICT or (
            i < len(words) - 1 and word.lower() == "kind" and words[i + 1].lower() == "of"
        )
        if is_modifier:
            sentiments.append(0.0)
        else:
            sentiments = analyzer.sentiment_valence(0, sentitext, word, i, sentiments)
    sentiments = analyzer._but_check(words, sentiments)
    spans = []
    for match, word in zip(matches, words, strict=True):
        offset = match.group().find(word)
        start = match.start() + max(offset, 0)
        spans.append((start, start + len(word)))
    valences = np.asarray(sentiments, dtype=np.float64)
    total = float(valences.sum())
    if total != 0.0:
        emphasis = analyzer._punctuation_emphasis(text)
        total += emphasis if total > 0 else -emphasis
    return WordCredit(words=list(words), spans=spans, valences=valences, total=total)
