"""`check_ray_state`: a cut-short state file of the newest driver session is named; whole ones, older
sessions, a folder with no snapshot yet and a file whole again by the second look pass. Pickles are
parsed, never loaded."""

from __future__ import annotations

import json
import pickle
import threading
from pathlib import Path

import pytest

from tune_jobs.files import RayStateError, check_ray_state

OLD, NEW = "2026-01-01_10-00-00", "2026-01-02_09-00-00"


class Exploding:
    """Runs code when unpickled: the check must never load a pickle."""

    def __reduce__(self) -> tuple:
        return (exec, ("raise SystemExit('a state pickle was loaded')",))


def write_session(folder: Path, session: str) -> dict[str, bytes]:
    """The three state files Ray keeps per driver session, whole."""
    files = {
        f"experiment_state-{session}.json": json.dumps({"trial_data": [["x" * 200, "y"]] * 20}).encode(),
        f"searcher-state-{session}.json": json.dumps({"trials": list(range(100))}).encode(),
        f"search_gen_state-{session}.json": pickle.dumps({"searcher": Exploding(), "pad": "z" * 300}),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def test_whole_sessions_and_a_folder_without_snapshot_pass(tmp_path: Path) -> None:
    check_ray_state(str(tmp_path / "missing"))
    check_ray_state(str(tmp_path))
    write_session(tmp_path, OLD)
    write_session(tmp_path, NEW)
    check_ray_state(str(tmp_path))


@pytest.mark.parametrize("kind", ["experiment_state", "searcher-state", "search_gen_state"])
@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_a_cut_short_file_of_the_newest_session_is_named(tmp_path: Path, kind: str, keep: float) -> None:
    write_session(tmp_path, OLD)
    files = write_session(tmp_path, NEW)
    name = f"{kind}-{NEW}.json"
    (tmp_path / name).write_bytes(files[name][: int(len(files[name]) * keep)])
    with pytest.raises(RayStateError) as raised:
        check_ray_state(str(tmp_path), retry_after=0.0)
    message = str(raised.value)
    assert str(tmp_path / name) in message and "cut short" in message
    assert len(message.splitlines()) == 1


def test_damage_in_an_older_session_does_not_matter(tmp_path: Path) -> None:
    # Ray restores from the newest snapshot only.
    files = write_session(tmp_path, OLD)
    write_session(tmp_path, NEW)
    name = f"experiment_state-{OLD}.json"
    (tmp_path / name).write_bytes(files[name][:10])
    check_ray_state(str(tmp_path))


def test_a_file_being_copied_is_read_again(tmp_path: Path) -> None:
    # A running sweep's driver copies its state into storage file by file; `results` may look mid-copy.
    files = write_session(tmp_path, NEW)
    name = f"experiment_state-{NEW}.json"
    (tmp_path / name).write_bytes(files[name][:100])
    copier = threading.Timer(0.2, (tmp_path / name).write_bytes, args=(files[name],))
    copier.start()
    check_ray_state(str(tmp_path), retry_after=2.0)
    copier.join()
