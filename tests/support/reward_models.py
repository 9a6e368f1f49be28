"""Small reward models built in memory: an additive one with exact per-token credit, and a causal one.

The additive RM is a real torch module with its own word-level tokenizer (not the policy's byte-level
BPE): score = sum over tokens of a per-token value, with [MASK] and [PAD] worth 0.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from dense_reward.builtin.tiny import WORDS
from dense_reward.config import ModelSpec, RewardModelSpec
from dense_reward.models import load_tokenizer
from dense_reward.reward_model import RewardModel

PUNCTUATION = [".", ",", "!", "?"]


def word_level_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: i for i, token in enumerate(special + sorted(set(WORDS)) + PUNCTUATION)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )


class AdditiveRewardModel(torch.nn.Module):
    """score(ids) = sum_t head(embed(ids_t)) over real tokens: additive in the tokens."""

    def __init__(self, vocab_size: int, zero_ids: list[int], hidden: int = 8, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.embed = torch.nn.Embedding(vocab_size, hidden)
        self.head = torch.nn.Linear(hidden, 1, bias=False)
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(vocab_size, hidden, generator=generator))
            self.embed.weight[zero_ids] = 0.0
            self.head.weight.copy_(torch.randn(1, hidden, generator=generator))
        self.requires_grad_(False)

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.embed

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_attentions=False):
        embeds = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, H)
        per_token = self.head(embeds)[..., 0] * attention_mask  # (B, T)
        return SimpleNamespace(logits=per_token.sum(dim=1, keepdim=True))

    def token_values(self, ids: list[int]) -> np.ndarray:
        with torch.no_grad():
            return self.head(self.embed(torch.tensor(ids)))[:, 0].double().numpy()


def tiny_causal_reward_model(batch_size: int = 64) -> RewardModel:
    """A 2-layer GPT-2 with a `score` head (a causal RM), on the tiny policy tokenizer."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    tokenizer = load_tokenizer(ModelSpec(path="builtin:tiny-gpt2"), padding_side="right")
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2, num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    config._attn_implementation = "eager"
    model = GPT2ForSequenceClassification(config).eval().requires_grad_(False)
    spec = RewardModelSpec(path="tiny-causal-rm", batch_size=batch_size, max_length=config.n_positions)
    return RewardModel(model, tokenizer, spec)


def tiny_llama_reward_model(batch_size: int = 64) -> RewardModel:
    """A 2-layer Llama with a `score` head (rotary positions, grouped-query attention), on the tiny policy tokenizer."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tokenizer = load_tokenizer(ModelSpec(path="builtin:tiny-gpt2"), padding_side="right")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, num_labels=1, pad_token_id=tokenizer.pad_token_id,
    )
    config._attn_implementation = "eager"
    model = LlamaForSequenceClassification(config).eval().requires_grad_(False)
    spec = RewardModelSpec(path="tiny-llama-rm", batch_size=batch_size, max_length=config.max_position_embeddings)
    return RewardModel(model, tokenizer, spec)
