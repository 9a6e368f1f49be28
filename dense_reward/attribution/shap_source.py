"""`shap`: Owen values from the `shap` library's PartitionExplainer over the response tokens.

The Text masker (with the RM tokenizer, so the mask token is the RM's own) perturbs the response
only; the prompt is held fixed by closing the model function over it. For an additive reward the
Owen values are the Shapley values, i.e. each token's own contribution.

Cost is `max_evals` RM calls per response. With ``batched=True`` (default) the responses of a batch
are explained concurrently and their calls merged into shared RM forwards (`batching`), which
leaves shap's algorithm and its values unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np

from dense_reward.attribution.base import RMTokenExplainer, ScoredBatch, TokenCredit
from dense_reward.attribution.batching import BatcherStats, Scorer, run_concurrently
from dense_reward.reward_model import RewardModel


class ShapExplainer(RMTokenExplainer):
    """Partition (Owen) SHAP values of each response's RM tokens, prompt fixed.

    Args:
        reward_model: the RM.
        max_evals: model evaluations per response (shap's ``max_evals``); about M^2 for M tokens
            expands the whole partition tree.
        batched: merge the RM calls of all responses of a batch (see `batching`).
        workers: responses explained at once when batched (default: the whole batch).
    """

    name: ClassVar[str] = "shap"

    def __init__(
        self, reward_model: RewardModel, max_evals: int = 64, batched: bool = True, workers: int | None = None
    ) -> None:
        super().__init__(reward_model)
        if max_evals < 4:
            raise ValueError(f"shaping.shap.max_evals must be >= 4, got {max_evals}")
        self.max_evals = max_evals
        self.batched = batched
        self.workers = workers
        self.last_stats: BatcherStats | None = None

    def credit(self, batch: ScoredBatch) -> list[TokenCredit]:
        tasks = [self._task(p, r) for p, r in zip(batch.prompts, batch.responses, strict=True)]
        if not self.batched:
            scorer = Scorer(self.reward_model)
            return [task(scorer) for task in tasks]
        # shap also scores the unmasked response; the batch already holds that score.
        known = {(p, r): float(s) for p, r, s in zip(batch.prompts, batch.responses, batch.scores, strict=True)}
        credits, self.last_stats = run_concurrently(tasks, self.reward_model, self.workers, known=known)
        return credits

    def _task(self, prompt: str, response: str) -> Callable[[Scorer], TokenCredit]:
        return lambda scorer: self.explain_one(prompt, response, scorer)

    def explain_one(self, prompt: str, response: str, scorer: Scorer) -> TokenCredit:
        """SHAP values of one response's RM tokens, scored through `scorer`."""
        import shap

        tokenizer = self.reward_model.tokenizer
        offsets = [tuple(o) for o in tokenizer(response, return_offsets_mapping=True)["offset_mapping"]]
        keep = [i for i, (start, end) in enumerate(offsets) if end > start]
        if not keep:
            return TokenCredit([], np.zeros(0))

        def model(texts: np.ndarray) -> np.ndarray:
            return scorer.score(prompt, [str(t) for t in texts])  # (N,)

        explainer = shap.Explainer(model, shap.maskers.Text(tokenizer), algorithm="partition")
        values = np.asarray(explainer([response], max_evals=self.max_evals, silent=True).values[0], dtype=np.float64)
        if values.shape != (len(offsets),):
            raise RuntimeError(f"shap returned {values.shape} values for {len(offsets)} RM tokens of {response!r}")
        return TokenCredit([offsets[i] for i in keep], values[keep])
