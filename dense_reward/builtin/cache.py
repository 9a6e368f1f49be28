"""The folder built-in models are built into, and the build-then-rename step that fills it.

Built-in models are written once into ``$DENSE_REWARD_CACHE/builtin/<name>`` (default
``~/.cache/dense-reward``) and from then on loaded with ``from_pretrained`` like any local folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    """Where built-in models are cached: ``$DENSE_REWARD_CACHE`` or ``~/.cache/dense-reward``."""
    return Path(os.environ.get("DENSE_REWARD_CACHE", Path.home() / ".cache" / "dense-reward"))


def model_dir(name: str) -> Path:
    """The cached folder of the built-in model `name` (it may not be built yet)."""
    return cache_dir() / "builtin" / name


def is_built(folder: Path) -> bool:
    """Whether `folder` holds a finished model folder (the rename into place is the last step)."""
    return (folder / "config.json").is_file()


def build_in_place(target: Path, build: Callable[[Path], object]) -> None:
    """Run `build(folder)` on a folder beside `target`, then rename it to `target`.

    Concurrent trials building the same model never see half a folder; the loser of the race
    drops its copy.
    """
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    build(tmp)
    try:
        tmp.replace(target)
    except OSError:
        if not is_built(target):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
