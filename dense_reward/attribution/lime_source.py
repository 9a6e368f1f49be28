"""`lime`: positional LIME weights from the `lime` library's LimeTextExplainer.

Features are the response's RM tokens (split on the RM tokenizer's character offsets) taken by
position (``bow=False``): a removed token is replaced by the RM's mask token, the prompt never
changes. The weights of LIME's local linear (ridge) model are the credit. ``num_samples`` perturbed
texts per response, merged across the batch into shared RM forwards like `shap`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np

from dense_reward.attribution.base import RMTokenExplainer, ScoredBatch, TokenCredit
from dense_reward.attribution.batching import BatcherStats, Scorer, run_concurrently
from dense_reward.reward_model import RewardModel


class LimeExplainer(RMTokenExplainer):
    """LIME over the positions of each response's RM tokens, prompt fixed.

    Args:
        reward_model: the RM.
        num_samples: perturbed texts per response (LIME's ``num_samples``, the original included).
        seed: seed of LIME's sampler; every response uses it, so results do not depend on batch order.
        kernel_width: LIME's kernel width on the cosine distance (x100) between masks.
        batched: merge the RM calls of all responses of a batch (see `batching`).
        workers: responses explained at once when batched (default: the whole batch).
    """

    name: ClassVar[str] = "lime"

    def __init__(
        self,
        reward_model: RewardModel,
        num_samples: int = 64,
        seed: int = 0,
        kernel_width: float = 25.0,
        batched: bool = True,
        workers: int | None = None,
    ) -> None:
        super().__init__(reward_model)
        if num_samples < 4:
            raise ValueError(f"shaping.lime.num_samples must be >= 4, got {num_samples}")
        self.num_samples = num_samples
        self.seed = seed
        self.kernel_width = kernel_width
        self.batched = batched
        self.workers = workers
        tokenizer = reward_model.tokenizer
        self.mask_string = tokenizer.mask_token or tokenizer.unk_token or ""
        self.last_stats: BatcherStats | None = None

    def credit(self, batch: ScoredBatch) -> list[TokenCredit]:
        known = {(p, r): float(s) for p, r, s in zip(batch.prompts, batch.responses, batch.scores, strict=True)}
        tasks = [self._task(p, r) for p, r in zip(batch.prompts, batch.responses, strict=True)]
        if not self.batched:
            scorer = Scorer(self.reward_model)
            return [task(scorer) for task in tasks]
        # LIME's first sample is the unperturbed response, whose score the batch already has.
        credits, self.last_stats = run_concurrently(tasks, self.reward_model, self.workers, known=known)
        return credits

    def _task(self, prompt: str, response: str) -> Callable[[Scorer], TokenCredit]:
        return lambda scorer: self.explain_one(prompt, response, scorer)

    def explain_one(self, prompt: str, response: str, scorer: Scorer) -> TokenCredit:
        """LIME weights of one response's RM tokens, scored through `scorer`."""
        from lime.lime_text import LimeTextExplainer

        encoded = self.reward_model.tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
        spans = [(int(s), int(e)) for s, e in encoded["offset_mapping"] if e > s]
        if not spans:
            return TokenCredit([], np.zeros(0))
        pieces = [response[s:e] for s, e in spans]
        explainer = LimeTextExplainer(
            kernel_width=self.kernel_width,
            bow=False,
            split_expression=lambda _text: pieces,
            mask_string=self.mask_string,
            feature_selection="none",
            random_state=self.seed,
        )

        def model(texts: list[str]) -> np.ndarray:
            return scorer.score(prompt, texts)[:, None]  # (N, 1): one "class", the reward

        explanation = explainer.explain_instance(
            response, model, labels=(0,), num_features=len(spans), num_samples=self.num_samples
        )
        indexed = explanation.domain_mapper.indexed_string
        token_at = {start: i for i, (start, _) in enumerate(spans)}
        values = np.zeros(len(spans))
        for feature, weight in explanation.local_exp[0]:
            # Features are positions in LIME's own segmentation; map each back to its RM token.
            (start,) = indexed.string_position(feature)
            if int(start) in token_at:
                values[token_at[int(start)]] = weight
        return TokenCredit(spans, values)
