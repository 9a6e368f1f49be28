"""Build the demo kit ahead of a sweep: the policy and the reward model, with progress lines.

Configs name the kit as `builtin:smollm2-135m-instruct` and `builtin:minilm-rm`; any run builds a
missing one on first use through `dense_reward.builtin.registry`. `build_kit` does the same ahead
of time, quietly and with timings, and does nothing the second time.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from dense_reward.builtin.cache import is_built, model_dir
from dense_reward.builtin.demo import DEMO_PROMPTS_PATH, POLICY_NAME, REWARD_MODEL_NAME
from dense_reward.builtin.registry import resolve_model

KIT_MODELS = (POLICY_NAME, REWARD_MODEL_NAME)
"""The kit's models, in build order."""

Progress = Callable[[str], None]


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No transformers progress bars or load reports (the new reward head is "missing" by design).

    The GGUF reader's bar ("Converting and de-quantizing GGUF tensors") is tqdm's own, which
    transformers' switch does not reach; it is turned off here too (in a log file it was hundreds
    of redraws on one line).
    """
    from transformers import modeling_gguf_pytorch_utils as gguf
    from transformers.utils import logging

    verbosity, bars, gguf_bar = logging.get_verbosity(), logging.is_progress_bar_enabled(), gguf.tqdm
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    gguf.tqdm = functools.partial(gguf_bar, disable=True)
    try:
        yield
    finally:
        gguf.tqdm = gguf_bar
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def kit_names_in(paths: list[str]) -> list[str]:
    """The kit models among config model paths (`builtin:<name>` of a kit model), in kit order."""
    wanted = {path.removeprefix("builtin:") for path in paths if path.startswith("builtin:")}
    return [name for name in KIT_MODELS if name in wanted]


def build_kit(progress: Progress = print, names: list[str] | None = None) -> dict[str, Path]:
    """Build the kit models `names` (default: all) not yet in the cache; returns name -> folder.

    Each model is built beside its final folder and renamed into place, so a sweep started at the
    same time never sees half a folder.
    """
    folders = {}
    for name in KIT_MODELS if names is None else names:
        target = model_dir(name)
        folders[name] = target
        if is_built(target):
            progress(f"{name}: cached at {target}")
            continue
        progress(f"{name}: building (first run only)")
        started = time.perf_counter()
        with quiet_transformers():
            resolve_model(name, progress=progress)
        progress(f"{name}: built in {time.perf_counter() - started:.0f} s at {target}")
    agreement_file = model_dir(REWARD_MODEL_NAME) / "agreement.json"
    if REWARD_MODEL_NAME in folders and agreement_file.is_file():
        heldout = json.loads(agreement_file.read_text())["heldout"]
        progress(
            f"{REWARD_MODEL_NAME}: agrees with the gold scorer on held-out replies: pairwise accuracy "
            f"{heldout['pairwise_accuracy']:.3f}, Spearman {heldout['spearman']:.3f}"
        )
    progress(f"demo prompts: {DEMO_PROMPTS_PATH}")
    return folders
