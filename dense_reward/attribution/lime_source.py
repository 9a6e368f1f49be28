"""`lime`: LIME weights over the response's RM-token features, fitted by the `lime` library's LimeBase.

The features are the response's RM tokens by position (`perturbation.Features`: the tokens of one
multi-byte character form one feature); a masked feature's tokens become the RM's mask token, or
are removed when it has none; the prompt never changes. The neighbourhood is LIME's text scheme
(Ribeiro et al., arXiv 1602.04938; ``LimeTextExplainer`` with ``bow=False``): the first sample is
the response itself, each other one masks k features chosen uniformly without replacement, k
uniform in 1..M; samples are weighted by ``sqrt(exp(-d^2 / width^2))`` of their cosine distance d
(x100) to the response, and the weights of LimeBase's local ridge model are the credit.
``num_samples`` perturbations per response, merged across the batch into shared RM forwards like `shap`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from dense_reward.attribution.base import import_detached
from dense_reward.attribution.batching import Scorer
from dense_reward.attribution.perturbation import Features, PerturbationExplainer
from dense_reward.reward_model import RewardModel


def neighbourhood(size: int, num_samples: int, random: np.random.RandomState) -> np.ndarray:
    """(num_samples, size) 0/1 masks: row 0 keeps every feature, each other row masks a random subset."""
    masked_counts = random.randint(1, size + 1, num_samples - 1)
    masks = np.ones((num_samples, size))
    for row, count in enumerate(masked_counts, start=1):
        masks[row, random.choice(size, count, replace=False)] = 0.0
    return masks


def cosine_distances(masks: np.ndarray) -> np.ndarray:
    """(N,) cosine distance (x100) of each mask row to row 0 (all ones); a row with nothing kept is at 100."""
    norms = np.linalg.norm(masks, axis=1) * np.linalg.norm(masks[0])
    similarity = np.divide(masks @ masks[0], norms, out=np.zeros(len(masks)), where=norms > 0)
    return (1.0 - similarity) * 100.0


class LimeExplainer(PerturbationExplainer):
    """LIME over the positions of each response's RM-token features, prompt fixed.

    Args:
        reward_model: the RM.
        num_samples: perturbed responses per response (LIME's ``num_samples``, the original included).
        seed: seed of the sampler; every response uses it, so results do not depend on batch order.
        kernel_width: LIME's kernel width on the cosine distance (x100) between masks.
        batched: merge the RM calls of all responses of a batch (see `batching`).
        workers: responses explained at once when batched (default: the whole batch).
        prompt_cache: on a causal RM, encode each prompt once (see `PerturbationExplainer`).
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
        prompt_cache: bool = True,
    ) -> None:
        super().__init__(reward_model, batched=batched, workers=workers, prompt_cache=prompt_cache)
        if num_samples < 4:
            raise ValueError(f"shaping.lime.num_samples must be >= 4, got {num_samples}")
        self.num_samples = num_samples
        self.seed = seed
        self.kernel_width = kernel_width
        import_detached("lime.lime_base")  # here, not first inside an explanation (see `import_detached`)

    def explain_one(self, features: Features, scorer: Scorer) -> np.ndarray:
        """(M,) LIME weights of the M >= 1 features of one response, scored through `scorer`."""
        from lime.lime_base import LimeBase

        size = len(features)
        masks = neighbourhood(size, self.num_samples, np.random.RandomState(self.seed))
        scores = scorer.score([features.perturb(row > 0.5) for row in masks], features.prompt_length)  # (N,)
        width = self.kernel_width
        base = LimeBase(lambda d: np.sqrt(np.exp(-(d**2) / width**2)), random_state=self.seed)
        _, weights, _, _ = base.explain_instance_with_data(
            masks, scores[:, None], cosine_distances(masks), label=0, num_features=size, feature_selection="none"
        )
        values = np.zeros(size)
        for feature, weight in weights:
            values[feature] = weight
        return values
