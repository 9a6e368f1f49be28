"""A resumed trial continues from its newest checkpoint on storage, even one Ray's experiment record lacks.

Ray Tune records its experiment (trials, their checkpoints) only every ``TUNE_GLOBAL_CHECKPOINT_S``
seconds (and after ``num_to_keep`` checkpoints of a trial). Here the record is made stale on purpose: a
long period and more kept checkpoints than the trial writes, so Ray's record holds the trial but none of
its checkpoints. The sweep driver, its private Ray and the trial process are SIGKILLed right after the
first trial's checkpoint of epoch 2 (or of its last epoch) is complete on storage (for epoch 2 the trial
waits at the start of epoch 3 through the trainable's fault hook: tiny epochs take under 0.1 s); on
``--resume`` that trial must go on at epoch 3 (or report its finished result again), never start over. A second trial,
one at a time, keeps the sweep (and so Ray's record) open after the first trial ends.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from ray.tune import ExperimentAnalysis

from dense_reward.run import read_run_state
from tests.support.driver_faults import cli, complete_checkpoints, driver_env, kill_session, resume_sweep
from tests.support.paths import TINY_CONFIG
from tune_jobs import tracking
from tune_jobs.results import load_results
from tune_jobs.rundir import read_manifest
from tune_jobs.trainable import FAULT_ACTION_ENV, FAULT_EPOCH_ENV, FAULT_MARKER_ENV

pytestmark = pytest.mark.integration

EPOCHS = 3


@pytest.mark.timeout(900)
@pytest.mark.parametrize("killed_after_epoch", [2, EPOCHS])
def test_trial_continues_from_a_checkpoint_rays_record_missed(
    tmp_path: Path, killed_after_epoch: int
) -> None:
    data = yaml.safe_load(TINY_CONFIG.read_text())
    data["name"] = "stale"
    data["shaping"]["sources"] = ["sparse", "attention"]
    data["evaluation"]["heatmap_samples"] = 0
    data["ppo"]["epochs"] = EPOCHS
    data["search"].update(trials=2, max_concurrent=1)
    # More kept checkpoints than the trial writes: no checkpoint forces Ray to record the experiment.
    data["resources"]["checkpoints_to_keep"] = EPOCHS + 2
    config_path = tmp_path / "stale.yaml"
    config_path.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "stale"

    log = (tmp_path / "driver.log").open("w")
    pause = {}
    if killed_after_epoch < EPOCHS:
        pause = {
            FAULT_EPOCH_ENV: str(killed_after_epoch + 1),
            FAULT_MARKER_ENV: str(tmp_path / "paused"),
            FAULT_ACTION_ENV: "pause",
        }
    driver = subprocess.Popen(
        cli("sweep", str(config_path), "--run-dir", str(run_dir)),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=driver_env(TUNE_GLOBAL_CHECKPOINT_S="100000", **pause),
        start_new_session=True,
    )
    folder = f"checkpoint_{killed_after_epoch - 1:06d}"
    try:
        deadline = time.monotonic() + 600
        written: list[Path] = []
        while not written:
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"no complete {folder} in time"
            written = complete_checkpoints(run_dir / "tune", folder)
            time.sleep(0.05)
    finally:
        kill_session(driver.pid)
        driver.wait()
        log.close()
    assert read_run_state(written[0])["epoch"] == killed_after_epoch
    trial_id = written[0].parent.name.removeprefix("trial_")

    manifest = read_manifest(run_dir)
    # Ray's record knows the trial but not the checkpoint just written.
    recorded = {row.trial_id: row for row in load_results(manifest).trials}
    assert recorded[trial_id].epoch < killed_after_epoch

    resume_sweep(run_dir)

    rows = load_results(manifest).trials
    assert len(rows) == 2 and all(r.status == "TERMINATED" and r.epoch == EPOCHS for r in rows)
    row = next(r for r in rows if r.trial_id == trial_id)
    assert row.metrics["resumed_from_epoch"] == killed_after_epoch
    assert row.best_checkpoint is not None and read_run_state(row.best_checkpoint)["epoch"] >= 1
    # The resumed attempt reported only what came after its checkpoint (a finished trial, its last result
    # again, which the first driver may have seen too).
    epochs = ExperimentAnalysis(manifest.experiment_path).trial_dataframes[trial_id]["epoch"].tolist()
    assert epochs[-1] == EPOCHS
    assert all(
        epochs.count(e) <= (2 if e == killed_after_epoch == EPOCHS else 1) for e in range(1, EPOCHS + 1)
    )

    client = MlflowClient(tracking_uri=manifest.tracking_uri)
    children = tracking.child_runs(client, manifest.experiment_id, manifest.parent_run_id)
    assert sorted(c.data.tags[tracking.TAG_TRIAL_ID] for c in children) == sorted(r.trial_id for r in rows)
    child = next(c for c in children if c.data.tags[tracking.TAG_TRIAL_ID] == trial_id)
    assert child.info.status == "FINISHED"
    history = client.get_metric_history(child.info.run_id, "resumed_from_epoch")
    # Epochs up to the kill were logged by the first attempt only; a resumed one began after them.
    expected = {1: 0.0, 2: 0.0, 3: 2.0} if killed_after_epoch == 2 else {1: 0.0, 2: 0.0, 3: 0.0}
    assert {m.step: m.value for m in history} == expected
    assert sorted(m.step for m in client.get_metric_history(child.info.run_id, "val_reward")) == [1, 2, 3]
