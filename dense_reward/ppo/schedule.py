"""The learning-rate schedule of PPO: linear warm-up, then constant, linear or cosine decay to 0."""

from __future__ import annotations

import math
from collections.abc import Callable


def lr_lambda(warmup_steps: int, total_steps: int | None, schedule: str) -> Callable[[int], float]:
    """LR multiplier per optimiser step: linear warm-up, then constant, linear or cosine decay to 0."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if schedule == "constant" or total_steps is None:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier
