"""Every attribution source by name: a plain mapping from the names of `dense_reward.simplex.SOURCES` to classes."""

from __future__ import annotations

from typing import Any

from dense_reward.attribution.attention import AttentionExplainer
from dense_reward.attribution.base import Explainer
from dense_reward.attribution.integrated_gradients import IntegratedGradientsExplainer
from dense_reward.attribution.lime_source import LimeExplainer
from dense_reward.attribution.log_ratio import LogRatioExplainer
from dense_reward.attribution.redistribution import RedistributionExplainer
from dense_reward.attribution.shap_source import ShapExplainer
from dense_reward.attribution.sparse import SparseExplainer
from dense_reward.reward_model import RewardModel

EXPLAINERS: dict[str, type[Explainer]] = {
    explainer.name: explainer
    for explainer in (
        SparseExplainer,
        AttentionExplainer,
        RedistributionExplainer,
        ShapExplainer,
        LimeExplainer,
        IntegratedGradientsExplainer,
        LogRatioExplainer,
    )
}
"""Source name -> explainer class; each class carries its facts (e.g. ``is_distribution``)."""


def build_explainer(name: str, reward_model: RewardModel, **options: Any) -> Explainer:
    """The source called `name`, built on `reward_model` with its options (e.g. ``max_evals=64``)."""
    if name not in EXPLAINERS:
        raise ValueError(f"unknown attribution source {name!r}; known: {list(EXPLAINERS)}")
    try:
        return EXPLAINERS[name](reward_model, **options)
    except TypeError as error:
        raise ValueError(f"bad options {sorted(options)} for source {name!r}: {error}") from None
