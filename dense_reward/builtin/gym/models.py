"""The credit gym's policy and reward model, built offline from a seed in seconds.

Both share one word-level vocabulary (`tokenizer`): a `tokenizers` WordLevel model with whitespace
splitting, saved as a Hugging Face fast tokenizer, so one policy token is one word and the RM's
word spans and the policy's token spans cover the same characters.

- `credit-gym-policy`: a 2-layer GPT-2 (d 64) trained for `POLICY_STEPS` steps on Markov-chain
  text (`task.sample_chains`), so it writes varied text the way the chain does. It never sees an
  special token as a target, so responses are nearly always ``ppo.max_new_tokens`` words (in 128
  sampled 64-word responses, 4 met an early [EOS] and about 0.2% of positions held another special
  token, which decodes to nothing).
- `credit-gym-rm`: a 2-layer BERT sequence classifier (num_labels=1, d 64) fitted to the gold
  reward of chain texts with randomly tilted word mixes (so it has seen texts richer in good,
  opener, closer and pair words than the chain writes, as PPO's texts become). It learns the gold,
  it is not the gold: its token credit differs from the exact gold credit. Its held-out agreement
  with the gold is written to ``agreement.json`` in its folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dense_reward.builtin.gym import task

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[EOS]")
POSITIONS = 128
"""Position limit of both models: prompt (<= 8 words) + response (<= 64) + specials fit with room."""
POLICY_STEPS = 200
"""Optimiser steps of the policy's pretraining (batch 32 chains of 72 words)."""
RM_TRAIN_SAMPLES = 4000
RM_HELDOUT_SAMPLES = 1000
RM_EPOCHS = 2


def tokenizer(for_reward_model: bool):
    """The gym's fast tokenizer: special tokens then `task.world().words`, one id per word.

    The RM's version wraps an input as ``[CLS] text [SEP]``; the policy's adds nothing and ends
    with ``[EOS]``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + task.world().words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if for_reward_model:
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=backend,
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
            model_max_length=POSITIONS,
        )
    # The RM's markers are special to the policy too: should the policy ever emit one, it decodes to
    # nothing (like [EOS]) instead of the literal text "[CLS]".
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        eos_token="[EOS]",
        additional_special_tokens=["[CLS]", "[SEP]", "[MASK]"],
        padding_side="left",
        model_max_length=POSITIONS,
    )


def _word_ids(chains: np.ndarray) -> np.ndarray:
    """Token ids (B, T) of word-index chains (B, T): words come after the special tokens."""
    return chains + len(SPECIAL_TOKENS)


def build_policy(out_dir: str | Path, progress=print, steps: int = POLICY_STEPS, seed: int = 0) -> Path:
    """Train the gym policy (2-layer GPT-2) on Markov-chain text and save it with its tokenizer into `out_dir`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast = tokenizer(for_reward_model=False)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(fast),
        n_positions=POSITIONS,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=fast.eos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    rng = np.random.default_rng([task.WORLD_SEED, seed, 2])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    model.train()
    for step in range(steps):
        batch = torch.from_numpy(_word_ids(task.sample_chains(rng, 32, 72)))  # (32, 72)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % 50 == 0:
            progress(f"credit-gym-policy: step {step + 1}/{steps}, loss {loss.item():.3f}")
    model.eval()
    model.generation_config.pad_token_id = fast.pad_token_id
    model.generation_config.eos_token_id = fast.eos_token_id
    model.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    return out_dir


def reward_model_samples(count: int, seed: int) -> tuple[list[str], list[str]]:
    """`count` (prompt, response) texts for fitting or checking the RM; responses 16-64 words.

    Each response is a chain whose transitions are tilted by a random log-weight on the good and
    bad words (from -1.5 to +2.5) and on a random half of the opener, closer and pair words, so
    texts span the word mixes a policy passes through on its way to a high gold reward.
    """
    w = task.world()
    rng = np.random.default_rng([task.WORLD_SEED, seed, 3])
    index = w.index
    sign = np.zeros(task.VOCAB_SIZE)
    sign[[index[word] for word in w.good]] = 1.0
    sign[[index[word] for word in w.bad]] = -1.0
    special = [index[word] for word in sorted(w.openers | w.closers) + [a for pair in w.pairs for a in pair]]
    tilt = rng.uniform(-1.5, 2.5, size=(count, 1)) * sign  # (B, V)
    for row in range(count):
        chosen = rng.choice(special, size=len(special) // 2, replace=False)
        tilt[row, chosen] += rng.uniform(0.0, 2.5)
    lengths = rng.integers(16, 65, size=count)
    prompt_lengths = rng.integers(4, 9, size=count)
    chains = task.sample_chains(rng, count, 8 + 64, tilt)  # (B, 72)
    prompts = [task.to_text(chain[:n]) for chain, n in zip(chains, prompt_lengths, strict=True)]
    responses = [task.to_text(chain[8 : 8 + n]) for chain, n in zip(chains, lengths, strict=True)]
    return prompts, responses


def _rank(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values)).astype(np.float64)


def agreement(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman correlation of (N,) predicted rewards with (N,) gold rewards."""
    return {
        "pearson": float(np.corrcoef(predicted, gold)[0, 1]),
        "spearman": float(np.corrcoef(_rank(predicted), _rank(gold))[0, 1]),
        "samples": len(gold),
    }


def build_reward_model(
    out_dir: str | Path,
    progress=print,
    epochs: int = RM_EPOCHS,
    train_samples: int = RM_TRAIN_SAMPLES,
    seed: int = 1,
) -> Path:
    """Fit the gym RM (2-layer BERT, num_labels=1) to gold rewards and save it into `out_dir`.

    The head is rescaled after fitting so that the RM's score is in gold units (not standardised).
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast = tokenizer(for_reward_model=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=POSITIONS,
        num_labels=1,
        pad_token_id=fast.pad_token_id,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BertForSequenceClassification(config)
    prompts, responses = reward_model_samples(train_samples + RM_HELDOUT_SAMPLES, seed)
    gold = task.gold_reward(responses)
    mean, scale = float(gold[:train_samples].mean()), float(gold[:train_samples].std())
    target = torch.tensor((gold - mean) / scale, dtype=torch.float32)
    # The text the RM reads at run time: prompt, the default separator (models.reward.separator), response.
    encoded = fast(
        [p + "\n" + r for p, r in zip(prompts, responses, strict=True)], padding=True, return_tensors="pt"
    )
    rng = np.random.default_rng([task.WORLD_SEED, seed, 4])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    batch_size = 64
    total = epochs * (train_samples // batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / total)
    model.train()
    for epoch in range(epochs):
        order = rng.permutation(train_samples)
        for start in range(0, train_samples - batch_size + 1, batch_size):
            rows = torch.from_numpy(order[start : start + batch_size])
            output = model(
                input_ids=encoded["input_ids"][rows], attention_mask=encoded["attention_mask"][rows]
            )
            loss = torch.nn.functional.mse_loss(output.logits.squeeze(-1), target[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        progress(f"credit-gym-rm: epoch {epoch + 1}/{epochs}, loss {loss.item():.3f}")
    model.eval()
    with torch.no_grad():
        model.classifier.weight.mul_(scale)
        model.classifier.bias.mul_(scale).add_(mean)
        heldout = slice(train_samples, None)
        predicted = model(
            input_ids=encoded["input_ids"][heldout], attention_mask=encoded["attention_mask"][heldout]
        ).logits.squeeze(-1)
    scores = agreement(predicted.double().numpy(), gold[heldout])
    progress(f"credit-gym-rm: held-out Pearson {scores['pearson']:.3f}, Spearman {scores['spearman']:.3f}")
    model.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    (out_dir / "agreement.json").write_text(json.dumps({"heldout": scores}, indent=2))
    return out_dir
