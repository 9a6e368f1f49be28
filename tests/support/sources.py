"""Options that build every attribution source on the tiny test models (`log_ratio` needs two policies)."""

from __future__ import annotations

from typing import Any

LOG_RATIO_OPTIONS: dict[str, Any] = {"policy": "builtin:tiny-gpt2-dpo", "reference": "builtin:tiny-gpt2"}
"""Explainer options of `log_ratio`: tiny-gpt2 tuned with DPO, and tiny-gpt2 itself as its reference."""

LOG_RATIO_SECTION: dict[str, Any] = {
    "policy": {"path": LOG_RATIO_OPTIONS["policy"]},
    "reference": {"path": LOG_RATIO_OPTIONS["reference"]},
}
"""The same as a ``shaping.log_ratio`` config section."""
