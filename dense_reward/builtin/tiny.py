"""Tiny random models and prompts built offline, for tests and `tune_jobs/configs/tiny.yaml`.

`tiny-gpt2` is a 2-layer GPT-2 with a byte-level BPE tokenizer; `tiny-rm` is a 2-layer BERT
sequence classifier (num_labels=1) with a WordPiece tokenizer, so policy and reward model never
share a tokenizer. Both are built (tokenizers) and initialised (weights) from a fixed seed in a
few seconds (the WordPiece vocabulary is counted, not trained, so two builds are identical) and saved
as ordinary Hugging Face folders, then loaded through the same
`from_pretrained` path as hub models. `tiny-prompts` is 200 sentences of the same vocabulary.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

WORDS = (
    "the a an and or but if then so because when while where who what which this that these those "
    "i you he she it we they me him her us them my your his its our their good great happy kind nice "
    "helpful thanks thank please sorry bad sad angry awful terrible poor wrong hate love like enjoy "
    "help answer question reply respond explain tell show write read make take give find think know "
    "say see come go get want need try use work call feel look ask seem leave put mean keep let begin "
    "day time year way thing man woman child world life hand part place case week company system "
    "program number group problem fact water room money story month lot book eye job word business "
    "side kind head house service friend power hour game line end member law car city name team "
    "minute idea body information back parent face others level office door health person art war "
    "history party result change morning reason research girl guy moment air teacher force education "
    "is are was were be been being have has had do does did will would can could should may might must "
    "very really quite just also too only even still already always never often sometimes here there "
    "now today tomorrow yesterday soon later new old big small long short high low early late young "
    "important different same right left sure clear easy hard best better worse worst free full"
).split()
"""A fixed vocabulary of common English words from which the tokenizer corpora are drawn."""


def corpus(n_sentences: int = 2000, seed: int = 0) -> list[str]:
    """Deterministic pseudo-English sentences for training the tiny tokenizers."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n_sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
        punct = rng.choice([".", "!", "?", ",", "."])
        sentences.append(" ".join(words).capitalize() + punct)
    return sentences


def prompt_rows() -> list[dict[str, str]]:
    """The `tiny-prompts` dataset: 200 ``{"prompt": <sentence>}`` rows (seed 7, unlike the tokenizer corpora)."""
    return [{"prompt": sentence} for sentence in corpus(n_sentences=200, seed=7)]


def build_tiny_policy(out_dir: str | Path, seed: int = 0, vocab_size: int = 512) -> Path:
    """Build a tiny GPT-2 with a byte-level BPE tokenizer (with a chat-free plain format) into `out_dir`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(seed=seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        padding_side="left",
    )
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(fast),
        n_positions=256,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    return out_dir


def build_tiny_reward_model(out_dir: str | Path, seed: int = 1, vocab_size: int = 400) -> Path:
    """Build a tiny BERT reward model (num_labels=1) with a WordPiece tokenizer into `out_dir`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # The vocabulary is counted here rather than by tokenizers' WordPieceTrainer, whose choice among
    # equally frequent merges changes from run to run (and with it the model's scores).
    counts = Counter(
        word for text in corpus(seed=seed) for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    )
    chars = sorted({char for word in counts for char in word})
    vocab = special + chars + ["##" + char for char in chars]
    by_frequency = sorted(counts, key=lambda word: (-counts[word], word))
    vocab += [word for word in by_frequency if word not in vocab][: max(0, vocab_size - len(vocab))]
    tokenizer = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        num_labels=1,
        pad_token_id=fast.pad_token_id,
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    return out_dir
