"""Per-token credit sources (DESIGN.md section 1), the mapping of sources by name, and alignment to policy tokens.

Build a source with `build_explainer(name, reward_model)`; `EXPLAINERS[name]` is its class, with its facts.
"""

from dense_reward.attribution.align import align_credit, policy_token_offsets
from dense_reward.attribution.base import Explainer, RMTokenExplainer, ScoredBatch, TokenCredit
from dense_reward.attribution.registry import EXPLAINERS, build_explainer

__all__ = [
    "EXPLAINERS",
    "Explainer",
    "RMTokenExplainer",
    "ScoredBatch",
    "TokenCredit",
    "align_credit",
    "build_explainer",
    "policy_token_offsets",
]
