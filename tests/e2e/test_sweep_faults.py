"""Faults on a real local Ray and a real MLflow store.

- a trial process SIGKILLed mid-run is retried from its checkpoint and the sweep completes;
- the sweep driver SIGKILLed mid-sweep: `sweep --resume` completes the sweep without rerunning finished
  trials and without duplicate MLflow runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.support.driver_faults import cli, driver_env, kill_session, resume_sweep, session_processes
from tests.support.paths import TINY_CONFIG
from tests.support.ray_fixtures import ray_local  # noqa: F401
from tune_jobs import tracking
from tune_jobs.config import load_sweep_config
from tune_jobs.results import load_results
from tune_jobs.rundir import read_manifest
from tune_jobs.sweep import run_sweep
from tune_jobs.trainable import FAULT_EPOCH_ENV, FAULT_MARKER_ENV

pytestmark = pytest.mark.integration

# Cheap sources keep these tests about faults, not attribution cost.
SMALL = {
    "shaping.sources": ["sparse", "attention"],
    "search.points_to_evaluate": [{"sparse": 1.0}],
    "evaluation.heatmap_samples": 0,
}


def val_reward_steps(client: MlflowClient, run_id: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, "val_reward"))


@pytest.mark.timeout(600)
def test_killed_trial_is_retried_from_its_checkpoint(
    ray_local: None,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_EPOCH_ENV, "2")
    monkeypatch.setenv(FAULT_MARKER_ENV, str(marker))
    config = load_sweep_config(TINY_CONFIG).with_overrides({**SMALL, "name": "fault", "search.trials": 2})
    outcome = run_sweep(config, run_dir=tmp_path / "fault")

    killed = marker.read_text()
    rows = {row.trial_id: row for row in outcome.results.trials}
    assert killed in rows
    assert all(row.status == "TERMINATED" and row.epoch == 2 for row in rows.values())
    assert rows[killed].num_failures == 1
    # The retry started after the checkpoint of epoch 1, not from scratch.
    assert rows[killed].metrics["resumed_from_epoch"] == 1
    others = [row for trial_id, row in rows.items() if trial_id != killed]
    assert all(row.num_failures == 0 and row.metrics["resumed_from_epoch"] == 0 for row in others)

    manifest = outcome.manifest
    client = MlflowClient(tracking_uri=manifest.tracking_uri)
    children = tracking.child_runs(client, manifest.experiment_id, manifest.parent_run_id)
    assert sorted(c.data.tags[tracking.TAG_TRIAL_ID] for c in children) == sorted(rows)
    for child in children:
        assert child.info.status == "FINISHED"
        assert val_reward_steps(client, child.info.run_id) == [1, 2]


def wait_for_finished_trial(run_dir: Path, driver: subprocess.Popen, timeout: float) -> set[str]:
    """Poll MLflow until a trial's child run is FINISHED; return the ids of the finished trials."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None, "the sweep driver ended before it could be killed"
        manifest = read_manifest(run_dir)
        if manifest is not None:
            client = MlflowClient(tracking_uri=manifest.tracking_uri)
            children = tracking.child_runs(client, manifest.experiment_id, manifest.parent_run_id)
            finished = {c.data.tags[tracking.TAG_TRIAL_ID] for c in children if c.info.status == "FINISHED"}
            if finished:
                return finished
        time.sleep(1)
    raise AssertionError(f"no trial finished within {timeout} s")


@pytest.mark.timeout(900)
def test_driver_killed_mid_sweep_resumes_without_rerunning_or_duplicates(tmp_path: Path) -> None:
    data = yaml.safe_load(TINY_CONFIG.read_text())
    data["name"] = "crash"
    data["shaping"]["sources"] = SMALL["shaping.sources"]
    data["evaluation"]["heatmap_samples"] = 0
    data["search"]["trials"] = 2
    # One trial at a time leaves the second unfinished when the first one ends.
    data["search"]["max_concurrent"] = 1
    config_path = tmp_path / "crash.yaml"
    config_path.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "crash"
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen(
        cli("sweep", str(config_path), "--run-dir", str(run_dir)),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=driver_env(),
        start_new_session=True,
    )
    try:
        finished_before = wait_for_finished_trial(run_dir, driver, timeout=600)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        # The driver's reaper ends what its private Ray left (Ray's agents outlive a killed driver).
        deadline = time.monotonic() + 30
        while session_processes(driver.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert session_processes(driver.pid) == [], "processes of the killed driver's Ray are still running"
    finally:
        # The driver's private Ray joined its session (each worker in a process group of its own):
        # end whatever of it survived the driver.
        kill_session(driver.pid)
        log.close()

    manifest = read_manifest(run_dir)
    client = MlflowClient(tracking_uri=manifest.tracking_uri)
    before = {
        c.data.tags[tracking.TAG_TRIAL_ID]: c
        for c in tracking.child_runs(client, manifest.experiment_id, manifest.parent_run_id)
    }
    assert finished_before <= set(before)

    resumed = resume_sweep(run_dir)
    assert "best observed: weights" in resumed.stdout and "recommended:" in resumed.stdout

    rows = load_results(manifest).trials
    assert len(rows) == 2
    assert all(row.status == "TERMINATED" and row.epoch == 2 for row in rows)
    children = tracking.child_runs(client, manifest.experiment_id, manifest.parent_run_id)
    assert sorted(c.data.tags[tracking.TAG_TRIAL_ID] for c in children) == sorted(
        row.trial_id for row in rows
    )
    runs = client.search_runs([manifest.experiment_id])
    assert sum(r.data.tags.get(tracking.TAG_KIND) == "sweep" for r in runs) == 1
    # A trial that started just before the kill but never reached Ray's snapshot is rerun as a new
    # trial; its old run is kept, tagged and soft-deleted, not counted twice.
    for trial_id, child in before.items():
        if trial_id not in {row.trial_id for row in rows}:
            retired = client.get_run(child.info.run_id)
            assert retired.info.lifecycle_stage == "deleted"
            assert tracking.TAG_SUPERSEDED in retired.data.tags
    for child in children:
        assert child.info.status == "FINISHED"
        assert val_reward_steps(client, child.info.run_id) == [1, 2]
        trial_id = child.data.tags[tracking.TAG_TRIAL_ID]
        if trial_id in finished_before:
            # Not rerun: the run was not reopened, so it ended when it ended before the crash.
            assert child.info.end_time == before[trial_id].info.end_time
    assert client.get_run(manifest.parent_run_id).info.status == "FINISHED"
