"""Writing run-dir files so that a driver killed mid-write never leaves half a file."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a file beside it and a rename.

    A reader, or a driver resumed after a kill, sees the old content or the new one. Searcher
    states need it most: Ray saves them after every trial event, and one written in place and cut
    short by a kill left an empty file; Ray then failed to restore the experiment and started it
    afresh with no trials (a resumed sweep that waited forever).
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)
