"""The embedded demo kit: an offline policy, reward model, gold scorer and prompt set.

Importing this package is cheap (no torch); the builders live in `dense_reward.demo.kit`.
"""

from pathlib import Path

DEMO_PROMPTS_PATH = Path(__file__).resolve().parent / "prompts.jsonl"
"""Bundled prompts asking for a positive, helpful reply: one `{"prompt": ...}` object per line."""

__all__ = ["DEMO_PROMPTS_PATH"]
