"""Per-token credit sources (DESIGN.md section 1), a registry by name, and alignment to policy tokens.

Importing this package registers every source; build one with `build_explainer(name, reward_model)`.
"""

from dense_reward.attribution import (  # noqa: F401  (each source registers itself on import)
    align,
    attention,
    base,
    gradient,
    lime_source,
    redistribution,
    shap_source,
    sparse,
)
from dense_reward.attribution.align import align_credit, policy_token_offsets
from dense_reward.attribution.base import (
    Explainer,
    RMTokenExplainer,
    ScoredBatch,
    TokenCredit,
    build_explainer,
    register_explainer,
    registered_sources,
)

__all__ = [
    "Explainer",
    "RMTokenExplainer",
    "ScoredBatch",
    "TokenCredit",
    "align",
    "align_credit",
    "base",
    "build_explainer",
    "policy_token_offsets",
    "register_explainer",
    "registered_sources",
]
