"""The run dir of a sweep and its manifest, ``sweep.json``.

Layout of a run dir (default ``./runs/<name>``; Ray's ``storage_path`` unless
``resources.storage_path`` names another place or a URI):

    sweep.json       the manifest: config, Ray experiment path, MLflow URI / experiment / parent run id
    tune/            Ray's experiment: searcher state, one folder per trial with its checkpoints
    confirm/         the confirmation re-runs (``search.confirm_top_k`` > 0), a Ray experiment like tune/
    confirmation.json  the confirmation plan (candidates, fresh seeds), written before any re-run starts
    mlflow.db        the embedded MLflow store (when no tracking URI is set) ...
    mlartifacts/     ... with its artifacts beside it
    results.csv      the trial table, written at the end of the sweep
    plots/           BO convergence and weights plots
    final/<run id>/  each `dense-reward final` run's model (a Hugging Face folder), by its MLflow run id
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dense_reward.errors import UserError
from tune_jobs.config import SweepConfig, validate_sweep_config
from tune_jobs.files import write_atomically
from tune_jobs.tracking import TrackingTarget

MANIFEST = "sweep.json"
EXPERIMENT = "tune"
"""Ray's experiment name: trials live in ``<storage_path>/tune``."""
RUNS_ROOT = Path("runs")
RESULTS_CSV = "results.csv"
PLOTS = "plots"


@dataclass
class SweepManifest:
    """What a run dir holds: enough to resume the sweep, show its results or train its best trial."""

    name: str
    run_dir: str
    experiment_path: str
    """Ray's experiment folder or URI (``<storage_path>/tune``)."""
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    config: dict[str, Any]
    created: float = field(default_factory=time.time)

    @property
    def tracking_target(self) -> TrackingTarget:
        return TrackingTarget(self.tracking_uri, self.experiment_id, self.parent_run_id)

    @property
    def sources(self) -> list[str]:
        """The sweep's `shaping.sources`, in the order of the weight coordinates."""
        return list(self.config["shaping"]["sources"])

    def load_config(self) -> SweepConfig:
        return validate_sweep_config(self.config, source=str(Path(self.run_dir) / MANIFEST))

    def save(self) -> None:
        write_atomically(Path(self.run_dir) / MANIFEST, json.dumps(asdict(self), indent=2))


def read_manifest(run_dir: Path) -> SweepManifest | None:
    """The manifest of `run_dir`, or None when it has none."""
    path = run_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        return SweepManifest(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as error:
        raise UserError(f"{path} is not a sweep manifest ({error}); was it edited by hand?") from None


def resolve_run(run: str | Path) -> SweepManifest:
    """A sweep by run dir path or by name (``./runs/<name>``); `UserError` when there is none."""
    candidates = [Path(run)]
    if not Path(run).is_absolute() and len(Path(run).parts) == 1:
        candidates.append(RUNS_ROOT / str(run))
    for candidate in candidates:
        manifest = read_manifest(candidate)
        if manifest is not None:
            return manifest
    looked = " or ".join(str(c / MANIFEST) for c in candidates)
    raise UserError(
        f"unknown run {str(run)!r}: no {looked}; pass a run dir or the name of a sweep under ./runs"
    )


def default_run_dir(config: SweepConfig) -> Path:
    """``resources.storage_path`` when it is a local path, else ``./runs/<name>``."""
    storage = config.resources.storage_path
    if storage and "://" not in storage:
        return Path(storage)
    return RUNS_ROOT / config.name


def storage_path_of(config: SweepConfig, run_dir: Path) -> str:
    """Ray's ``storage_path``: the run dir, or the URI in ``resources.storage_path`` (e.g. s3://...)."""
    storage = config.resources.storage_path
    if storage and "://" in storage:
        return storage
    return str(run_dir.resolve())


def experiment_path_of(config: SweepConfig, run_dir: Path) -> str:
    """Ray's experiment folder or URI of a new sweep: ``<storage_path>/tune``."""
    return f"{storage_path_of(config, run_dir)}/{EXPERIMENT}"


def ray_session_folder(path: Path) -> Path | None:
    """The Ray session folder (``<ray temp>/session_<date>_<pid>``) that holds `path`, or None.

    A Ray Jobs submission runs its entrypoint in a working dir under ``runtime_resources/`` there, so
    a relative run dir lands in it; Ray deletes the folder with the session.
    """
    resolved = path.resolve()
    for folder in [resolved, *resolved.parents]:
        if folder.name.startswith("session_") and (
            (folder / "runtime_resources").is_dir()
            or ((folder / "logs").is_dir() and (folder / "sockets").is_dir())
        ):
            return folder
    return None


def session_folder_note(run_dir: Path) -> str | None:
    """A warning when `run_dir` lies in Ray's temporary session folder (lost with the session), else None."""
    session = ray_session_folder(run_dir)
    if session is None:
        return None
    return (
        f"the run dir {run_dir.resolve()} is inside Ray's session folder {session} (a Ray job's working dir), "
        "which Ray deletes with the session: its checkpoints, results and embedded MLflow store go with it. "
        "Set resources.storage_path (or --run-dir) to a lasting path, and tracking.uri or MLFLOW_TRACKING_URI "
        "to an MLflow server"
    )
