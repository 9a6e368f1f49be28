"""What the perturbation sources (`shap`, `lime`) switch on and off, and their shared batch loop.

A feature is a run of a response's RM tokens whose character spans overlap. Most features are one
token, but a byte-level tokenizer splits one multi-byte character (an emoji, a CJK character) into
several tokens that all carry that character's span: those form one feature, so a perturbation
never keeps half a character, and every feature owns distinct characters of the real text.

Perturbations are made on RM token ids, never by editing and re-tokenising text: a masked feature's
tokens are replaced by the RM's mask token one for one, or removed when the tokenizer has none. The
RM therefore reads exactly the kept tokens of the real response, and a mask can never be spelled
out as text (the RM encodes responses as plain text).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dense_reward.attribution.base import ExplanationError, RMTokenExplainer, ScoredBatch, TokenCredit
from dense_reward.attribution.batching import BatcherStats, Scorer, run_concurrently
from dense_reward.reward_model import RewardModel, RMInput


def feature_groups(offsets: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Runs of consecutive tokens whose character spans overlap: (first, end) token positions of each.

    A token with an empty span (no characters of its own) joins the run before it.
    """
    groups: list[tuple[int, int]] = []
    reach = 0
    for index, (start, end) in enumerate(offsets):
        if groups and (end <= start or start < reach):
            groups[-1] = (groups[-1][0], index + 1)
            reach = max(reach, end)
        else:
            groups.append((index, index + 1))
            reach = end
    return groups


@dataclass
class Features:
    """The switchable features of one encoded response.

    Attributes:
        item: the encoded (prompt, response) pair.
        groups: (first, end) response-token positions of each feature.
        mask_id: the RM token that stands in for a masked token; None = masked tokens are removed.
    """

    item: RMInput
    groups: list[tuple[int, int]]
    mask_id: int | None

    @classmethod
    def of(cls, item: RMInput, mask_id: int | None) -> Features:
        return cls(item, feature_groups(item.response_offsets), mask_id)

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def prompt_length(self) -> int:
        """Leading RM tokens that every perturbation keeps (prompt and template): a `Scorer` may cache them."""
        return self.item.response_start

    @property
    def spans(self) -> list[tuple[int, int]]:
        """(start, end) character span of each feature in the response."""
        offsets = self.item.response_offsets
        return [(offsets[a][0], max(end for _, end in offsets[a:b])) for a, b in self.groups]

    def perturb(self, keep: Sequence[bool] | np.ndarray) -> list[int]:
        """RM token ids of the pair with the features where `keep` is False masked; `keep` is (M,)."""
        ids, start = self.item.input_ids, self.item.response_start
        perturbed = ids[:start]
        for (a, b), on in zip(self.groups, keep, strict=True):
            if on:
                perturbed += ids[start + a : start + b]
            elif self.mask_id is not None:
                perturbed += [self.mask_id] * (b - a)
        return perturbed + ids[self.item.response_end :]


class PerturbationExplainer(RMTokenExplainer):
    """Base of `shap` and `lime`: explain each response alone, RM calls of a batch merged.

    Args:
        reward_model: the RM.
        batched: merge the RM calls of all responses of a batch (see `batching`).
        workers: responses explained at once when batched (default: the whole batch).
        prompt_cache: on a causal RM, encode each prompt once and score every perturbation as its
            continuation (`dense_reward.prompt_cache`); same scores, fewer FLOPs.
    """

    def __init__(
        self, reward_model: RewardModel, batched: bool = True, workers: int | None = None, prompt_cache: bool = True
    ) -> None:
        super().__init__(reward_model)
        self.batched = batched
        self.workers = workers
        self.prompt_cache = prompt_cache
        self.mask_id: int | None = reward_model.tokenizer.mask_token_id
        self.last_stats: BatcherStats | None = None

    def explain_one(self, features: Features, scorer: Scorer) -> np.ndarray:
        """(M,) credit of the M features of one response, scored through `scorer`."""
        raise NotImplementedError

    def credit(self, batch: ScoredBatch) -> list[TokenCredit]:
        items = self.reward_model.encode(batch.prompts, batch.responses)
        tasks = [self._task(index, Features.of(item, self.mask_id), batch) for index, item in enumerate(items)]
        if not self.batched:
            scorer = Scorer(self.reward_model, self.prompt_cache)
            return [task(scorer) for task in tasks]
        # Every explanation also scores its unperturbed response, whose score the batch already holds.
        known = {tuple(item.input_ids): float(score) for item, score in zip(items, batch.scores, strict=True)}
        credits, self.last_stats = run_concurrently(
            tasks, self.reward_model, self.workers, known=known, prompt_cache=self.prompt_cache
        )
        return credits

    def _task(self, index: int, features: Features, batch: ScoredBatch) -> Callable[[Scorer], TokenCredit]:
        def run(scorer: Scorer) -> TokenCredit:
            if not len(features):
                return TokenCredit([], np.zeros(0))
            try:
                values = np.asarray(self.explain_one(features, scorer), dtype=np.float64).reshape(-1)
                if values.shape != (len(features),):
                    raise ValueError(f"got {values.shape[0]} values for {len(features)} features")
            except Exception as error:
                raise ExplanationError(self.name, index, batch.responses[index], error) from error
            return TokenCredit(features.spans, values)

        return run
