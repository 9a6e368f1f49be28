"""`log_ratio`: per-token credit from a DPO-tuned policy and its reference.

A policy tuned with DPO (Rafailov et al., arXiv 2305.18290) on preferences of the reward model is an
implicit reward model: beta * log(pi_dpo(y_t | x, y_<t) / pi_ref(y_t | x, y_<t)) is a token-level
reward whose sum over a response is its DPO reward up to a term of the prompt alone. RTO (Zhong et
al., arXiv 2404.18922) trains PPO on exactly this token-wise reward; PRIME (Cui et al., arXiv
2502.01456) uses the same log-ratio of an implicit process reward model as dense credit. Here it is
one more credit source: the credit of a response token is

    a_t = log pi_dpo(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)

over the DPO model's tokens of the response, moved onto the policy's tokens by character offsets
(`align`) like the RM sources, then normalised and scaled by the RM's r in `shaping` so that the
dense rewards of a response sum to r. beta only rescales a_t: ``softmax`` absorbs it in ``shaping.tau``,
and ``scaled-softmax``, ``l1`` and ``signed`` do not see it.

The prompt is the raw prompt wrapped in the DPO model's chat template when it has one (as the
policy's prompts are). The DPO model and its reference must share one tokenizer (the ratio is per
token); the policy being trained may tokenise differently. Cost: one forward of each model per
``batch_size`` responses (two forwards over the generated text).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from dense_reward.attribution.align import align_credit
from dense_reward.attribution.base import ExplanationError, ScoredBatch
from dense_reward.config import ModelSpec
from dense_reward.errors import UserError
from dense_reward.reward_model import RewardModel

FIELD = "shaping.log_ratio"


class LogRatioSetupError(UserError):
    """The DPO model or its reference is missing, or their tokenizers differ; the message names the field."""


def as_spec(value: ModelSpec | Mapping[str, Any] | str | None, field: str) -> ModelSpec:
    """A `ModelSpec` from a spec, a mapping of its fields or a bare path."""
    if value is None:
        raise LogRatioSetupError(
            f"{field}: not set; source 'log_ratio' needs {FIELD}.policy (the DPO-tuned model) and "
            f"{FIELD}.reference (the model it was tuned from)"
        )
    if isinstance(value, ModelSpec):
        return value
    return ModelSpec(path=value) if isinstance(value, str) else ModelSpec(**value)


class LogRatioExplainer:
    """Per-token log pi_dpo - log pi_ref of each response, on the policy's tokens.

    Args:
        reward_model: unused (the source reads no RM); the registry builds every source on it.
        policy: the DPO-tuned causal LM (a `ModelSpec`, its fields, or a path such as ``builtin:tiny-gpt2-dpo``).
        reference: the causal LM it was tuned from, with the same tokenizer.
        batch_size: responses per forward of each model.

    Raises:
        LogRatioSetupError: a model is missing, or the two tokenizers differ.
    """

    name: ClassVar[str] = "log_ratio"
    is_distribution: ClassVar[bool] = False

    def __init__(
        self,
        reward_model: RewardModel | None = None,
        policy: ModelSpec | Mapping[str, Any] | str | None = None,
        reference: ModelSpec | Mapping[str, Any] | str | None = None,
        batch_size: int = 16,
    ) -> None:
        from dense_reward.models import load_policy

        policy_spec = as_spec(policy, f"{FIELD}.policy")
        reference_spec = as_spec(reference, f"{FIELD}.reference")
        self.policy, self.tokenizer = load_policy(policy_spec, field=f"{FIELD}.policy")
        self.reference, reference_tokenizer = load_policy(reference_spec, field=f"{FIELD}.reference")
        if self.tokenizer.get_vocab() != reference_tokenizer.get_vocab():
            raise LogRatioSetupError(
                f"{FIELD}: the tokenizers of policy {policy_spec.path!r} and reference {reference_spec.path!r} "
                "differ; a per-token log-ratio needs both models on one tokenizer (the reference is the model "
                "the DPO policy was tuned from)"
            )
        if not getattr(self.tokenizer, "is_fast", False):
            raise LogRatioSetupError(
                f"{FIELD}.policy: the tokenizer of {policy_spec.path!r} is not a fast tokenizer; character "
                "offsets (needed to move credit onto the trained policy's tokens) require one"
            )
        self.policy.eval().requires_grad_(False)
        self.reference.eval().requires_grad_(False)
        self.batch_size = batch_size
        self.forward_calls = 0
        """Model forwards run so far (each of the two models counts)."""

    def explain(self, batch: ScoredBatch) -> list[np.ndarray]:
        """One (T_i,) credit array per response over its policy tokens."""
        results: list[np.ndarray] = []
        for start in range(0, len(batch), self.batch_size):
            rows = list(range(start, min(start + self.batch_size, len(batch))))
            try:
                ratios, spans = self._log_ratios(batch.select(rows))
            except UserError:
                raise
            except Exception as error:
                raise ExplanationError(self.name, None, "", error) from error
            for row, index in enumerate(rows):
                results.append(align_credit(spans[row], ratios[row], batch.response_offsets[index]))
        return results

    @torch.no_grad()
    def _log_ratios(self, batch: ScoredBatch) -> tuple[list[np.ndarray], list[list[tuple[int, int]]]]:
        """Per response: (S,) log-ratios of its S DPO-model tokens and their character spans."""
        from dense_reward.data import format_prompt
        from dense_reward.ppo.rollout import response_logits, token_logprobs, tokenize_prompts

        tokenizer = self.tokenizer
        device = next(self.policy.parameters()).device
        prompts = [format_prompt(p, tokenizer) for p in batch.prompts]
        query_ids, query_mask = tokenize_prompts(tokenizer, prompts, device)  # (B, Tq) left-padded
        encoded = tokenizer(list(batch.responses), add_special_tokens=False, return_offsets_mapping=True)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        width = max(max(lengths), 1)
        response_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)  # (B, Tr)
        for row, ids in enumerate(encoded["input_ids"]):
            response_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        response_ids = response_ids.to(device)
        logprobs = []
        for model in (self.policy, self.reference):
            logits, _ = response_logits(model, query_ids, query_mask, response_ids, temperature=1.0)  # (B, Tr, V)
            logprobs.append(token_logprobs(logits.float(), response_ids))  # (B, Tr)
            self.forward_calls += 1
        ratio = (logprobs[0] - logprobs[1]).double().cpu().numpy()  # (B, Tr)
        spans = [[tuple(span) for span in offsets] for offsets in encoded["offset_mapping"]]
        return [ratio[row, :length] for row, length in enumerate(lengths)], spans
