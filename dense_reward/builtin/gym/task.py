"""The credit gym's world: a made-up vocabulary, the process that writes text in it, and the gold reward.

Text is made-up words joined by single spaces. A first-order Markov chain over the words (each row
a seeded Dirichlet draw, so every word has a handful of likely successors) writes the prompts and
the policy's pretraining text. The gold reward of a response is a known function of its words and
their places:

- **token values**: each of 12 *good* words adds +1, each of 12 *bad* words adds -1;
- **position terms**: each of 4 *opener* words adds +1 more when it is among the first
  `EDGE` (3) words of the response, each of 4 *closer* words +1 more among the last `EDGE`;
- **pair terms**: for each of 4 pairs (A, B), an A followed by a B within `PAIR_WINDOW` (3) words
  adds +2 (each A pairs at most once, with the nearest B after it).

All terms are scaled by `GOLD_SCALE` (0.1). The gold per-word credit is exact: a token value and a
position term go to the word that earns them, a pair term is split equally between its A and its B,
so the credit of a response sums to its gold reward. Words outside the vocabulary earn nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

VOCAB_SIZE = 96
"""Made-up words in the vocabulary (special tokens come on top)."""
GOLD_SCALE = 0.1
"""Every gold term is multiplied by this."""
EDGE = 3
"""Opener words count in the first `EDGE` response words, closer words in the last `EDGE`."""
PAIR_WINDOW = 3
"""A pair's B counts when it comes at most this many words after its A."""
PAIR_BONUS = 2.0
"""A completed pair's term (before `GOLD_SCALE`), split equally between its two words."""
WORLD_SEED = 2504
"""Seed of the vocabulary, the word roles and the Markov chain."""
CHAIN_CONCENTRATION = 0.3
"""Dirichlet concentration of each Markov row: small = few likely successors per word."""

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class World:
    """The gym's words, their gold roles and the Markov chain over them.

    Attributes:
        words: the `VOCAB_SIZE` made-up words, in token-id order after the special tokens.
        good / bad: words worth +1 / -1 wherever they are.
        openers / closers: words worth +1 more in the first / last `EDGE` response words.
        pairs: (A, B) word pairs worth `PAIR_BONUS` when B follows A within `PAIR_WINDOW` words.
        transitions: (V, V) row-stochastic Markov matrix over word indices.
    """

    words: tuple[str, ...]
    good: frozenset[str]
    bad: frozenset[str]
    openers: frozenset[str]
    closers: frozenset[str]
    pairs: tuple[tuple[str, str], ...]
    transitions: np.ndarray

    @property
    def index(self) -> dict[str, int]:
        """Word -> its row in `transitions`."""
        return {word: i for i, word in enumerate(self.words)}


@cache
def world() -> World:
    """The one gym world, drawn from `WORLD_SEED` (the same on every machine: numpy's PCG64 stream)."""
    rng = np.random.default_rng(WORLD_SEED)
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    words: list[str] = []
    while len(words) < VOCAB_SIZE:
        word = "".join(rng.choice(syllables, size=2))
        if word not in words:
            words.append(word)
    roles = rng.permutation(VOCAB_SIZE)
    named = [words[i] for i in roles]
    good, bad = named[:12], named[12:24]
    openers, closers = named[24:28], named[28:32]
    pair_words = named[32:40]
    pairs = tuple((pair_words[2 * k], pair_words[2 * k + 1]) for k in range(4))
    transitions = rng.dirichlet(np.full(VOCAB_SIZE, CHAIN_CONCENTRATION), size=VOCAB_SIZE)  # (V, V)
    return World(
        tuple(words),
        frozenset(good),
        frozenset(bad),
        frozenset(openers),
        frozenset(closers),
        pairs,
        transitions,
    )


# --------------------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------------------


def sample_chains(
    rng: np.random.Generator, count: int, length: int, tilt: np.ndarray | None = None
) -> np.ndarray:
    """`count` Markov chains of `length` word indices, each from a uniformly drawn first word.

    Args:
        rng: the random stream.
        count: number of chains B.
        length: words per chain T.
        tilt: optional (B, V) log-weights added to every transition of a chain, to move its word mix.

    Returns:
        (B, T) int64 word indices.
    """
    transitions = world().transitions  # (V, V)
    chains = np.empty((count, length), dtype=np.int64)
    chains[:, 0] = rng.integers(VOCAB_SIZE, size=count)
    log_p = np.log(transitions + 1e-12)
    for t in range(1, length):
        logits = log_p[chains[:, t - 1]]  # (B, V)
        if tilt is not None:
            logits = logits + tilt
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        cumulative = np.cumsum(probs, axis=1)
        draws = rng.random(count) * cumulative[:, -1]
        chains[:, t] = np.minimum((cumulative < draws[:, None]).sum(axis=1), VOCAB_SIZE - 1)
    return chains


def to_text(chain: np.ndarray) -> str:
    """Word indices (T,) as text: the words joined by single spaces."""
    words = world().words
    return " ".join(words[i] for i in chain)


def prompt_rows(count: int = 256, seed: int = 0) -> list[dict[str, str]]:
    """The `credit-gym-prompts` dataset: `count` prompts of 4-8 words from the Markov chain."""
    rng = np.random.default_rng([WORLD_SEED, seed, 1])
    lengths = rng.integers(4, 9, size=count)
    chains = sample_chains(rng, count, int(lengths.max()))
    return [{"prompt": to_text(chain[:n])} for chain, n in zip(chains, lengths, strict=True)]


# --------------------------------------------------------------------------------------------------
# gold
# --------------------------------------------------------------------------------------------------


def gold_token_credit(text: str) -> np.ndarray:
    """The exact gold credit of each word of a response (words = ``text.split()``).

    Returns:
        (W,) float64, one value per word; its sum is `gold_reward` of the text.
    """
    w = world()
    words = text.split()
    credit = np.zeros(len(words))
    for i, word in enumerate(words):
        if word in w.good:
            credit[i] += 1.0
        elif word in w.bad:
            credit[i] -= 1.0
        if word in w.openers and i < EDGE:
            credit[i] += 1.0
        if word in w.closers and i >= len(words) - EDGE:
            credit[i] += 1.0
    for first, second in w.pairs:
        for i, word in enumerate(words):
            if word != first:
                continue
            following = words[i + 1 : i + 1 + PAIR_WINDOW]
            if second in following:
                j = i + 1 + following.index(second)
                credit[i] += PAIR_BONUS / 2
                credit[j] += PAIR_BONUS / 2
    return credit * GOLD_SCALE


def gold_reward(texts: list[str]) -> np.ndarray:
    """The gold reward of B response texts: (B,) float64, each the sum of its `gold_token_credit`."""
    return np.array([gold_token_credit(text).sum() for text in texts], dtype=np.float64)
