"""The critic: a transformer backbone with a scalar head, or a scalar head on the policy's hidden states.

A separate critic starts from the policy's backbone or from the reward model's backbone (N+ details,
arXiv 2403.17031, initialise the value model from the reward model). Its head reads the last-layer
hidden state at each position, so `V_t` is the value of the prefix that ends at position t.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dense_reward.config import ConfigError, LoraSpec, ModelSpec
from dense_reward.models import add_lora, load_pretrained, load_tokenizer


class ValueHead(nn.Module):
    """Linear map from hidden states `(B, T, H)` to values `(B, T)`.

    Initialised as lm-human-preferences initialises its scalar heads
    (https://github.com/openai/lm-human-preferences/blob/master/lm_human_preferences/language/model.py):
    by default at zero, like its value head on the policy, so the first advantages are the rewards' alone
    and a head on the policy sends no gradient into it until the head's weights have moved; a head on a
    backbone of its own (a separate critic) with weights of std ``init_std`` = 1/sqrt(H + 1), like its
    reward head. Bias 0 either way.
    """

    def __init__(self, hidden_size: int, init_std: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.linear.weight, std=init_std)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden_states.to(self.linear.weight.dtype)).squeeze(-1)


class Critic(nn.Module):
    """A transformer backbone (e.g. `GPT2Model`) and a `ValueHead`: token ids `(B, T)` -> values `(B, T)`."""

    def __init__(self, backbone: nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        head = ValueHead(hidden_size, init_std=1.0 / math.sqrt(hidden_size + 1))
        self.head = head.to(next(backbone.parameters()).device)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        output = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        )
        return self.head(output.last_hidden_state)


def load_critic(
    init: str, policy_spec: ModelSpec, reward_spec: ModelSpec, policy_tokenizer, lora: LoraSpec | None = None
) -> Critic:
    """A critic whose backbone is loaded from the policy (`init="policy"`) or the reward model (`"reward"`).

    A reward-model backbone must read the policy's tokens, so its tokenizer must be the policy's; it should
    also be a causal model, since a bidirectional encoder would let `V_t` see tokens after t.
    """
    from transformers import AutoModel

    if init not in ("policy", "reward"):
        raise ConfigError(f"models.value.init: must be 'policy' or 'reward', got {init!r}")
    spec, field = (policy_spec, "models.policy") if init == "policy" else (reward_spec, "models.reward")
    if init == "reward":
        reward_vocab = load_tokenizer(reward_spec, field).get_vocab()
        if reward_vocab != policy_tokenizer.get_vocab():
            raise ConfigError(
                f"models.value.init: 'reward' needs a reward model with the policy's tokenizer, but "
                f"{reward_spec.path!r} has a different vocabulary; use models.value.init: policy"
            )
    backbone = load_pretrained(AutoModel, spec, field, trained=True)
    if lora is not None and lora.enabled:
        backbone = add_lora(backbone, lora, task_type="FEATURE_EXTRACTION")
    return Critic(backbone, backbone.config.hidden_size)
