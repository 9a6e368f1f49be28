"""A sweep submitted through the Ray Jobs API to a real two-node Ray cluster with an MLflow server.

Both Ray nodes and the MLflow server run on this machine on loopback. Each node offers one
`trial_slot` and every trial asks for one, so two concurrent trials must land on different nodes.
Every process started here is stopped with SIGTERM to its own PID at the end, also on failure
(never `ray stop`: it would kill every Ray process of the user).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from dense_reward.config import Config
from dense_reward.errors import UserError
from tests.support.paths import ROOT
from tests.support.ports import free_port, port_open
from tune_jobs import submit

BIN = Path(sys.executable).parent
TINY_CONFIG = ROOT / "tune_jobs" / "configs" / "tiny.yaml"

pytestmark = pytest.mark.integration


def wait_until(check, what: str, timeout: float, procs: list[subprocess.Popen]) -> None:
    """Poll `check()` until it is true; fail early when a process it depends on has died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: {proc.args[0]} exited with {proc.returncode}")
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@dataclass
class LocalCluster:
    """A head node, a worker node and an MLflow server, all on 127.0.0.1."""

    work: Path
    env: dict[str, str]
    jobs_url: str = ""
    gcs_address: str = ""
    mlflow_url: str = ""
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self, log_name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.work / f"{log_name}.log", "wb")  # noqa: SIM115 - the process outlives this call
        # A new session per process: SIGTERM reaches it and nothing else of ours.
        proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
            # Workers first, the head last, so the worker does not spin on a lost head.
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.work.glob("*.log")))


def start_cluster(work: Path) -> LocalCluster:
    """Start the MLflow server, the head and the worker; on any failure stop what already started."""
    env = dict(os.environ)
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    env.update(
        {
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_TMPDIR": str(work),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            # The job's entrypoint runs `python`: it must be this environment's.
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    cluster = LocalCluster(work=work, env=env)
    try:
        # The MLflow server starts first: it is independent of Ray and they boot in parallel.
        mlflow_port = free_port()
        cluster.mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        mlflow = cluster.start(
            "mlflow",
            [
                str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
                "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
                "--artifacts-destination", str(work / "mlartifacts"),
            ],
        )  # fmt: skip
        gcs_port, dashboard_port = free_port(), free_port()
        cluster.gcs_address = f"127.0.0.1:{gcs_port}"
        cluster.jobs_url = f"http://127.0.0.1:{dashboard_port}"
        head = cluster.start(
            "ray-head",
            [
                str(BIN / "ray"), "start", "--head", "--block",
                "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
                "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
                f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}",
                f"--temp-dir={work / 'ray'}", "--num-cpus=2", '--resources={"trial_slot": 1}',
                "--disable-usage-stats",
            ],
        )  # fmt: skip
        # The worker joins as soon as the head's GCS listens; the dashboard comes up meanwhile.
        wait_until(lambda: port_open(gcs_port), "ray head GCS", 90, [head])
        worker = cluster.start(
            "ray-worker",
            [
                str(BIN / "ray"), "start", "--block", f"--address={cluster.gcs_address}",
                "--node-ip-address=127.0.0.1", f"--dashboard-agent-listen-port={free_port()}",
                "--include-log-monitor=False", "--num-cpus=2", '--resources={"trial_slot": 1}',
                # Its own session folder: two nodes unpacking the job's working dir into one folder
                # replace it under the running driver (whose cwd then vanishes).
                f"--temp-dir={work / 'ray-worker'}", "--disable-usage-stats",
            ],
        )  # fmt: skip
        wait_until(lambda: alive_nodes(cluster) == 2, "two ray nodes", 120, [head, worker])
        wait_until(lambda: http_ok(f"{cluster.mlflow_url}/health"), "mlflow server", 90, [mlflow])
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    # A short root: Ray puts unix sockets under it and their paths must stay below 108 bytes.
    work = Path(tempfile.mkdtemp(prefix="drc-", dir="/tmp"))
    try:
        cluster = start_cluster(work)
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def alive_nodes(cluster: LocalCluster) -> int:
    try:
        with urllib.request.urlopen(f"{cluster.jobs_url}/nodes?view=summary", timeout=5) as response:
            summary = json.load(response)["data"]["summary"]
    except (OSError, KeyError, ValueError):
        return 0
    return sum(1 for node in summary if node.get("raylet", {}).get("state") == "ALIVE")


def node_ids(cluster: LocalCluster) -> set[str]:
    with urllib.request.urlopen(f"{cluster.jobs_url}/nodes?view=summary", timeout=5) as response:
        summary = json.load(response)["data"]["summary"]
    return {node["raylet"]["nodeId"] for node in summary if node["raylet"]["state"] == "ALIVE"}


def mlflow_api(cluster: LocalCluster, endpoint: str, body: dict | None = None) -> dict:
    """One call of MLflow's REST API on the server, over HTTP (GET without a body, else POST)."""
    request = urllib.request.Request(
        f"{cluster.mlflow_url}/api/2.0/mlflow/{endpoint}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def dense_reward(cluster: LocalCluster, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "dense-reward"), *args],
        env=cluster.env,
        cwd=cluster.work,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.timeout(420)
def test_submitted_sweep_runs_trials_on_both_nodes_and_logs_to_the_mlflow_server(cluster: LocalCluster) -> None:
    storage = cluster.work / "shared" / "runs" / "cluster-smoke"
    done = dense_reward(
        cluster,
        "submit", str(TINY_CONFIG), "--address", cluster.jobs_url, "--wait", "--name", "cluster-smoke",
        "--set", "search.trials=2",
        "--set", "search.max_concurrent=2",
        # Small trials: this test is about placement and tracking, not about the sources' cost. Three epochs
        # keep the first trial running while the second one's worker starts on the other node (with one
        # epoch, on a loaded machine, the first trial once ended first and Ray reused its worker instead).
        "--set", "ppo.epochs=3",
        "--set", "shaping.sources=[sparse, attention]",
        # One slot per node and one per trial: the two concurrent trials cannot share a node.
        "--set", "resources.custom_per_trial={trial_slot: 1}",
        "--set", f"resources.storage_path={storage}",
        "--set", f"tracking.uri={cluster.mlflow_url}",
        "--set", "tracking.experiment=cluster-smoke",
        timeout=360,
    )  # fmt: skip
    context = f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-3000:]}\n{cluster.logs()}"
    assert done.returncode == 0, context
    job_id = done.stdout.splitlines()[0].strip()
    assert job_id.startswith("raysubmit_"), context
    assert f"job {job_id}: SUCCEEDED" in done.stderr, context
    # The sweep's own summary, streamed from the head.
    assert "best observed: weights" in done.stdout and "recommended:" in done.stdout, context

    listed = dense_reward(cluster, "jobs", "--address", cluster.jobs_url, "--json", timeout=60)
    assert listed.returncode == 0, listed.stderr
    jobs = {row["id"]: row for row in json.loads(listed.stdout)}
    assert jobs[job_id]["status"] == "SUCCEEDED"
    assert jobs[job_id]["run"] == "cluster-smoke"

    experiment = mlflow_api(cluster, "experiments/get-by-name?experiment_name=cluster-smoke")
    runs = mlflow_api(
        cluster,
        "runs/search",
        {"experiment_ids": [experiment["experiment"]["experiment_id"]], "max_results": 100},
    )["runs"]
    tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
    sweeps = [run for run, tag in zip(runs, tags, strict=True) if tag.get("dense_reward.kind") == "sweep"]
    assert len(sweeps) == 1, tags
    parent_id = sweeps[0]["info"]["run_id"]
    trials = [
        (run, tag)
        for run, tag in zip(runs, tags, strict=True)
        if tag.get("dense_reward.kind") == "trial" and tag.get("mlflow.parentRunId") == parent_id
    ]
    assert len(trials) == 2, tags
    for run, tag in trials:
        assert run["info"]["status"] == "FINISHED", run["info"]
        assert "val_reward" in {m["key"] for m in run["data"]["metrics"]}, run["data"]
        assert tag.get("node"), tag
    assert {tag["ray_node_id"] for _, tag in trials} == node_ids(cluster), context
    assert (storage / "sweep.json").is_file()


@pytest.mark.timeout(180)
def test_jobs_stop_ends_a_job_and_submit_wait_exits_with_its_status(cluster: LocalCluster) -> None:
    waiting = subprocess.Popen(
        [
            str(BIN / "dense-reward"), "submit", str(TINY_CONFIG), "--address", cluster.jobs_url, "--wait",
            "--name", "to-stop",
            "--set", f"resources.storage_path={cluster.work / 'shared' / 'runs' / 'to-stop'}",
            "--set", f"tracking.uri={cluster.mlflow_url}",
        ],
        env=cluster.env,
        cwd=cluster.work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        job_id = waiting.stdout.readline().strip()
        assert job_id.startswith("raysubmit_"), waiting.stderr.read() if waiting.poll() is not None else job_id
        stopped = dense_reward(cluster, "jobs", "--address", cluster.jobs_url, "--stop", job_id, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        assert f"{job_id}: stop requested" in stopped.stdout
        _, stderr = waiting.communicate(timeout=120)
    finally:
        if waiting.poll() is None:
            waiting.send_signal(signal.SIGTERM)
            waiting.wait(timeout=30)
    assert waiting.returncode == 1, stderr
    assert f"job {job_id}: STOPPED" in stderr
    table = dense_reward(cluster, "jobs", "--address", cluster.jobs_url, timeout=60)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith(job_id))
    assert row.split()[1] == "STOPPED" and "to-stop" in row


def test_submit_rejects_a_bad_override_before_contacting_the_cluster() -> None:
    done = subprocess.run(
        [str(BIN / "dense-reward"), "submit", str(TINY_CONFIG), "--address", "http://127.0.0.1:9", "--set", "ppo.kl_coef=-1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "ppo.kl_coef" in done.stderr and "Ray" not in done.stderr


# --------------------------------------------------------------------------------------------------
# the job a submission builds (no cluster needed)
# --------------------------------------------------------------------------------------------------


def test_assignments_are_read_as_yaml_and_malformed_ones_are_named() -> None:
    values = submit.parse_assignments(
        ["search.trials=2", "ppo.kl_coef=0.1", "shaping.sources=[sparse, attention]", "x={a: 1}", "name="], "--set"
    )
    assert values == {
        "search.trials": 2,
        "ppo.kl_coef": 0.1,
        "shaping.sources": ["sparse", "attention"],
        "x": {"a": 1},
        "name": "",
    }
    with pytest.raises(UserError, match="--set 'search.trials'"):
        submit.parse_assignments(["search.trials"], "--set")


def test_the_job_carries_the_resolved_config_the_data_file_and_the_code(tmp_path: Path, tiny_config: Config) -> None:
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt": "hello"}\n')
    config = tiny_config.with_overrides({"data.source": str(data), "tracking.uri": "http://mlflow:5000"})
    staging = tmp_path / "staging"
    spec = submit.build_job(config, staging, env_vars={"A": "1"}, sweep_args=["--resume"])

    assert spec.entrypoint == "python -m tune_jobs.cli sweep sweep.yaml --address auto --resume"
    assert spec.runtime_env["working_dir"] == str(staging)
    assert spec.runtime_env["env_vars"] == {"A": "1"}
    shipped = {Path(p).name for p in spec.runtime_env["py_modules"]}
    assert shipped == {"dense_reward", "tune_jobs"}
    assert all((Path(p) / "__init__.py").is_file() for p in spec.runtime_env["py_modules"])
    written = yaml.safe_load((staging / submit.JOB_CONFIG_NAME).read_text())
    assert written["data"]["source"] == "prompts.jsonl"  # relative to the job's working dir
    assert (staging / "prompts.jsonl").read_text() == data.read_text()
    assert written["tracking"]["uri"] == "http://mlflow:5000"
    assert spec.metadata == {"dense_reward_run": "tiny"}
    # The storage is still the head's local default: the user is told before submitting.
    assert len(spec.notes) == 1 and "resources.storage_path" in spec.notes[0]

    image_only = submit.build_job(config, tmp_path / "other", ship_code=False)
    assert "py_modules" not in image_only.runtime_env
    local = submit.cluster_notes(tiny_config)
    assert any("tracking.uri" in note for note in local)
    # MLFLOW_TRACKING_URI set for the job is the job's store: no note about the tracking store then.
    with_env = submit.cluster_notes(tiny_config, {"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert not any("tracking.uri" in note for note in with_env)
