"""The embedded demo kit: an offline policy, reward model, gold scorer and prompt set.

Importing this package is cheap (no torch). `gguf_policy` builds the policy, `reward_head` the
reward model, `gold` is the VADER gold scorer, `prompts` reads the prompt set, and `kit` builds the
kit ahead of a sweep. All of them are registered in `dense_reward.builtin.registry`.
"""

from pathlib import Path

_HERE = Path(__file__).resolve().parent

DEMO_PROMPTS_PATH = _HERE / "prompts.jsonl"
"""Bundled prompts asking for a positive, helpful reply: one `{"prompt": ...}` object per line."""

NATURAL_REPLIES_PATH = _HERE / "natural_replies.jsonl"
"""Hand-written replies in plain prose, unlike the reward head's templates: a check that it generalises."""

POLICY_NAME = "smollm2-135m-instruct"
"""`builtin:<name>` of the demo policy."""

REWARD_MODEL_NAME = "minilm-rm"
"""`builtin:<name>` of the demo reward model."""

__all__ = ["DEMO_PROMPTS_PATH", "NATURAL_REPLIES_PATH", "POLICY_NAME", "REWARD_MODEL_NAME"]
