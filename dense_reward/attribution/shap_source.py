"""`shap`: Owen values from the `shap` library's PartitionExplainer over the response's RM tokens.

The features are the response's RM tokens (`perturbation.Features`: the tokens of one multi-byte
character form one feature); a masked feature's tokens become the RM's mask token, or are removed
when it has none. The prompt is held fixed. shap's tabular Partition masker switches the features
on and off (a row of ones against a background of zeros) and the model function turns each mask
row into RM token ids; the hierarchy is a balanced binary tree of contiguous runs of features. For an
additive reward the Owen values are the Shapley values, i.e. each token's own contribution.

Cost is `max_evals` RM calls per response. With ``batched=True`` (default) the responses of a batch
are explained concurrently and their calls merged into shared RM forwards (`batching`), which
leaves shap's algorithm and its values unchanged. shap breaks ties between equally promising tree
nodes with numpy's global generator; each response draws from its own seeded state of it
(`seeding.GlobalRandomLease`), so the same seed gives the same credit however threads interleave.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from dense_reward.attribution.base import import_detached
from dense_reward.attribution.batching import Scorer
from dense_reward.attribution.perturbation import Features, PerturbationExplainer
from dense_reward.attribution.seeding import GlobalRandomLease
from dense_reward.reward_model import RewardModel


def contiguous_tree(size: int) -> np.ndarray:
    """A balanced binary hierarchy of `size` >= 2 ordered features, as a (size - 1, 4) scipy linkage matrix.

    Every cluster is a contiguous run (left half, right half); row i merges nodes ``Z[i, 0]`` and
    ``Z[i, 1]`` (ids below `size` are features, ``size + j`` the cluster of row j) into a cluster of
    ``Z[i, 3]`` features at height ``Z[i, 2]`` (its share of all features). The root is the last row.
    """
    rows: list[list[float]] = []

    def build(low: int, high: int) -> int:
        if high - low == 1:
            return low
        middle = (low + high + 1) // 2
        left, right = build(low, middle), build(middle, high)
        rows.append([left, right, (high - low) / size, high - low])
        return size + len(rows) - 1

    build(0, size)
    return np.array(rows, dtype=np.float64)


class ShapExplainer(PerturbationExplainer):
    """Partition (Owen) SHAP values of each response's RM-token features, prompt fixed.

    Args:
        reward_model: the RM.
        max_evals: model evaluations per response (shap's ``max_evals``); about M^2 for M features
            expands the whole partition tree.
        seed: seed of shap's tie-breaking draws; every response uses it, so results do not depend on batch order.
        batched: merge the RM calls of all responses of a batch (see `batching`).
        workers: responses explained at once when batched (default: the whole batch).
        prompt_cache: on a causal RM, encode each prompt once (see `PerturbationExplainer`).
    """

    name: ClassVar[str] = "shap"

    def __init__(
        self,
        reward_model: RewardModel,
        max_evals: int = 64,
        seed: int = 0,
        batched: bool = True,
        workers: int | None = None,
        prompt_cache: bool = True,
    ) -> None:
        super().__init__(reward_model, batched=batched, workers=workers, prompt_cache=prompt_cache)
        if max_evals < 4:
            raise ValueError(f"shaping.shap.max_evals must be >= 4, got {max_evals}")
        self.max_evals = max_evals
        self.seed = seed
        import_detached("shap")  # here, not first inside an explanation (see `import_detached`)

    def explain_one(self, features: Features, scorer: Scorer) -> np.ndarray:
        """(M,) Owen values of the M >= 1 features of one response, scored through `scorer`."""
        import shap

        size = len(features)
        if size == 1:
            # One feature: its Shapley value is the whole difference (shap needs two to build a tree).
            full, masked = scorer.score([features.perturb([True]), features.perturb([False])], features.prompt_length)
            return np.array([full - masked])
        lease = GlobalRandomLease(self.seed)

        def model(masks: np.ndarray) -> np.ndarray:
            sequences = [features.perturb(row > 0.5) for row in masks]  # masks: (N, M) of 0/1
            with lease.released():
                return scorer.score(sequences, features.prompt_length)  # (N,)

        with lease:
            masker = shap.maskers.Partition(np.zeros((1, size)), clustering=contiguous_tree(size))
            explainer = shap.explainers.Partition(model, masker)
            explanation = explainer(np.ones((1, size)), max_evals=self.max_evals, silent=True)
        return np.asarray(explanation.values[0], dtype=np.float64)
