"""Run a sweep on a Ray cluster through the Ray Jobs API (`JobSubmissionClient`).

A submitted job is `python -m tune_jobs.cli sweep sweep.yaml --address auto`, run by the head node.
Its working dir is a small staging folder that holds `sweep.yaml`: the user's config with every
`--set` override applied, validated here so a bad value fails before anything reaches the cluster.
A local data file named by `data.source` is copied beside it. The project code travels with the job
as `py_modules` (the `dense_reward` and `tune_jobs` packages of this checkout) unless the cluster's
image already has it installed (`ship_code=False`), in which case the image's version runs.

Token auth: with `RAY_AUTH_MODE=token` and `RAY_AUTH_TOKEN` (or `RAY_AUTH_TOKEN_PATH`) exported,
Ray's client adds the `Authorization: Bearer` header by itself; nothing here handles tokens.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

import dense_reward
import tune_jobs
from dense_reward.config import ConfigError
from dense_reward.errors import UserError
from tune_jobs.config import SweepConfig, load_sweep_config

JOB_CONFIG_NAME = "sweep.yaml"
"""Name of the resolved config inside the job's working dir."""

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
"""The Jobs API of a head started on this machine with the default dashboard port."""

TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "STOPPED")

_ADDRESS_VARIABLES = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")

# Never shipped with the code: caches and build leftovers only slow the upload down.
_CODE_EXCLUDES = ["__pycache__", "*.pyc", "*.egg-info"]


@dataclass
class JobSpec:
    """Everything `JobSubmissionClient.submit_job` needs for one sweep."""

    entrypoint: str
    runtime_env: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Warnings about the config on a cluster (shown to the user before submitting)."""


def parse_assignments(pairs: list[str], option: str) -> dict[str, Any]:
    """Turn `["ppo.kl_coef=0.1", "search.trials=2"]` into a dict; values are read as YAML.

    YAML makes `2` an int, `0.1` a float, `[a, b]` a list and `{x: 1}` a mapping, as in a config file.
    """
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{option} {pair!r}: expected KEY=VALUE, e.g. {option} search.trials=4")
        try:
            result[key.strip()] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as error:
            raise UserError(f"{option} {pair!r}: the value is not valid YAML: {error}") from None
    return result


def resolve_config(path: str | Path, overrides: dict[str, Any]) -> SweepConfig:
    """Load the config file and apply the overrides; every error names the field and the value."""
    config = load_sweep_config(path)
    if not overrides:
        return config
    try:
        return config.with_overrides(overrides)
    except ConfigError as error:
        raise ConfigError(f"{path} with --set {overrides}: {error}") from None


def write_config(config: SweepConfig, path: Path) -> None:
    """Save the config as YAML with every default filled in, so the cluster cannot read it differently."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def cluster_notes(config: SweepConfig, env_vars: dict[str, str] | None = None) -> list[str]:
    """Settings that work on one machine but lose results on a cluster.

    The job's tracking store is ``tracking.uri``, else the ``MLFLOW_TRACKING_URI`` in the job's own
    `env_vars` (this machine's environment does not travel with the job).
    """
    notes = []
    if config.resources.storage_path is None:
        notes.append(
            "resources.storage_path is unset: checkpoints go to the job's working dir on the head node, "
            "which Ray deletes with the session; use shared storage, e.g. --set resources.storage_path=/mnt/shared/runs"
        )
    uri = config.tracking.uri or (env_vars or {}).get("MLFLOW_TRACKING_URI")
    if uri is None or uri.startswith("sqlite:") or uri.startswith("file:"):
        notes.append(
            f"tracking.uri (or MLFLOW_TRACKING_URI in --env) is {uri or 'unset'}: MLflow writes to a file on the "
            "head node only; use a server reachable from every node, e.g. --set tracking.uri=http://mlflow:5000"
        )
    return notes


def build_job(
    config: SweepConfig,
    staging_dir: Path,
    *,
    ship_code: bool = True,
    env_vars: dict[str, str] | None = None,
    sweep_args: list[str] | None = None,
) -> JobSpec:
    """Write the resolved config into `staging_dir` and describe the job that runs it.

    Args:
        config: the validated config, overrides applied.
        staging_dir: an empty folder; it becomes the job's working dir (uploaded by the client).
        ship_code: upload this checkout's `dense_reward` and `tune_jobs` packages with the job.
        env_vars: extra environment variables for the job's driver and every trial.
        sweep_args: extra arguments for `dense-reward sweep` (e.g. `["--resume"]`).
    """
    staging_dir.mkdir(parents=True, exist_ok=True)
    source = Path(config.data.source)
    if not config.data.source.startswith("builtin:") and source.is_file():
        # The head node has no access to the submitting machine's files: the data travels with the job.
        shutil.copy2(source, staging_dir / source.name)
        config = config.with_overrides({"data.source": source.name})
    write_config(config, staging_dir / JOB_CONFIG_NAME)

    runtime_env: dict[str, Any] = {"working_dir": str(staging_dir), "excludes": list(_CODE_EXCLUDES)}
    if ship_code:
        runtime_env["py_modules"] = [str(Path(dense_reward.__file__).parent), str(Path(tune_jobs.__file__).parent)]
    if env_vars:
        runtime_env["env_vars"] = dict(env_vars)
    entrypoint = " ".join(
        ["python", "-m", "tune_jobs.cli", "sweep", JOB_CONFIG_NAME, "--address", "auto", *(sweep_args or [])]
    )
    return JobSpec(
        entrypoint=entrypoint,
        runtime_env=runtime_env,
        metadata={"dense_reward_run": config.name},
        notes=cluster_notes(config, env_vars),
    )


def connect(address: str) -> Any:
    """A `JobSubmissionClient` for the head's Jobs API, or one clear error when it cannot be reached."""
    from ray.job_submission import JobSubmissionClient

    # Ray lets RAY_API_SERVER_ADDRESS / RAY_ADDRESS silently override the address it is given;
    # here the address argument wins (the CLI already defaults it to RAY_API_SERVER_ADDRESS).
    saved = {key: os.environ.pop(key) for key in _ADDRESS_VARIABLES if key in os.environ}
    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise UserError(
            f"cannot reach the Ray Jobs API at {address}: {str(error).rstrip('.')}. Is the head running with its dashboard "
            "(ray[default]) and is port 8265 reachable? With token auth on the cluster, export "
            "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN."
        ) from None
    finally:
        os.environ.update(saved)


def submit(client: Any, spec: JobSpec) -> str:
    """Submit the job; returns its submission id (`raysubmit_...`)."""
    try:
        return client.submit_job(entrypoint=spec.entrypoint, runtime_env=spec.runtime_env, metadata=spec.metadata)
    except RuntimeError as error:
        # e.g. 401/403 from a cluster with token auth, or a runtime env the head refuses.
        raise UserError(f"the Ray Jobs API refused the job: {str(error).splitlines()[0]}") from None


async def _stream_logs(client: Any, job_id: str, out: TextIO) -> None:
    async for chunk in client.tail_job_logs(job_id):
        out.write(chunk)
        out.flush()


def follow(client: Any, job_id: str, out: TextIO = sys.stdout, poll_seconds: float = 1.0) -> str:
    """Stream the job's logs to `out` until it ends; returns its final status (`SUCCEEDED`, ...)."""
    try:
        asyncio.run(_stream_logs(client, job_id, out))
    except RuntimeError as error:
        # A dropped log socket does not end the job: keep waiting on its status instead.
        print(f"log stream of {job_id} broke ({error}); waiting for the job to finish", file=sys.stderr)
    while True:
        status = str(client.get_job_status(job_id).value)
        if status in TERMINAL_STATUSES:
            return status
        time.sleep(poll_seconds)


def job_message(client: Any, job_id: str) -> str:
    """Ray's one-line explanation of a job's status (why it failed, who stopped it)."""
    return client.get_job_info(job_id).message or ""


def list_jobs(client: Any) -> list[dict[str, str]]:
    """Jobs on the cluster, oldest first, as rows for a table."""
    rows = []
    for job in sorted(client.list_jobs(), key=lambda j: j.start_time or 0):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.start_time / 1000)) if job.start_time else "-"
        rows.append(
            {
                "id": job.submission_id or job.job_id or "-",
                "status": str(job.status.value),
                "started": started,
                "run": (job.metadata or {}).get("dense_reward_run", "-"),
                "entrypoint": job.entrypoint,
            }
        )
    return rows


def stop(client: Any, job_id: str) -> bool:
    """Ask the cluster to stop a job; True when it was still running."""
    try:
        return bool(client.stop_job(job_id))
    except RuntimeError as error:
        raise UserError(f"cannot stop job {job_id}: {error}") from None
