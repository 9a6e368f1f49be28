"""Run-dir files: writing them so that a killed driver never leaves half a file, and checking the ones
Ray writes (which it does not guard so) before a sweep is resumed or read."""

from __future__ import annotations

import fnmatch
import io
import json
import os
import pickletools
import time
from pathlib import Path

import pyarrow.fs

from dense_reward.errors import UserError

EXPERIMENT_STATE = "experiment_state-*.json"
"""Ray's experiment snapshot, one per driver session (`TuneController.CKPT_FILE_TMPL`)."""


class RayStateError(UserError):
    """A state file of a Ray experiment folder is cut short or damaged."""


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


def check_ray_state(experiment_path: str, retry_after: float = 2.0) -> None:
    """Raise `RayStateError` when a state file of the newest driver session at `experiment_path` is not whole.

    Ray restores an experiment from its newest ``experiment_state-<session>.json`` and the searcher states of
    the same session (``searcher-state-<session>.json``, and ``search_gen_state-<session>.json``, a pickle
    despite its name). It writes the snapshot in place and copies the files into storage one by one, so a
    driver killed at the wrong moment can leave one cut short. Ray then logs "Failed to restore the run
    state" and starts the experiment afresh, without the trials it had. A folder without a
    snapshot passes (nothing to restore). A file that does not read is read again after `retry_after`
    seconds (a running sweep may be copying it). Pickles are only parsed (`pickletools`), never loaded.
    """
    filesystem, root = pyarrow.fs.FileSystem.from_uri(experiment_path)
    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    names = {info.base_name for info in infos if info.type == pyarrow.fs.FileType.File}
    snapshots = fnmatch.filter(names, EXPERIMENT_STATE)
    if not snapshots:
        return
    newest = max(snapshots)  # as Ray picks it: the session stamp sorts by time
    session = newest[len("experiment_state-") : -len(".json")]
    for name in sorted(n for n in names if n.endswith(f"-{session}.json")):
        path = f"{root}/{name}"
        for attempt in (1, 2):
            try:
                _read_whole(filesystem, path)
                break
            except (OSError, ValueError) as error:
                if attempt == 1:  # a running sweep's driver may be copying it right now: look again
                    time.sleep(retry_after)
                    continue
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise RayStateError(
                    f"Ray's state file {path} is cut short or damaged ({reason}), most likely because the "
                    "sweep driver was killed while writing it; Ray cannot restore its trials from it"
                ) from None


def _read_whole(filesystem: pyarrow.fs.FileSystem, path: str) -> None:
    """Raise ValueError (or OSError) unless the JSON or pickle file at `path` reads to its end."""
    with filesystem.open_input_stream(path) as stream:
        data = stream.read()
    if data[:1] == b"\x80":  # a pickle's protocol opcode: read its opcodes up to STOP
        for _ in pickletools.genops(io.BytesIO(data)):
            pass
    else:
        json.loads(data)
