"""`dense-reward ui` serves a sweep's sqlite store, and a real headless Chromium shows its trial runs.

The store is written by the sweep's own tracking code (the parent run and the manifest as the sweep
driver writes them, two trials through `TrialTracker` as trial processes log them), without PPO or
models: this test is about the UI, the sweep itself is covered by the sweep tests. Chromium is Debian's
(/usr/bin/chromium, installed by .ci/ensure-chromium), driven by the playwright package.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dense_reward.config import Config
from tests.support.ports import free_port, port_open
from tune_jobs import tracking
from tune_jobs.rundir import SweepManifest

BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TRIALS = {"trial_0000": {"sparse": 1.0}, "trial_0001": {"sparse": 0.3, "attention": 0.7}}

pytestmark = pytest.mark.integration


def other_addresses() -> set[str]:
    """This host's IPv4 addresses outside 127.0.0.0/8: the host name's and the default route's."""
    addresses = set()
    with contextlib.suppress(OSError):
        addresses |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
        # A UDP "connect" sends nothing; it only picks the interface of the default route.
        sock.connect(("198.51.100.1", 9))
        addresses.add(sock.getsockname()[0])
    return {a for a in addresses if not a.startswith("127.")}


@pytest.fixture()
def sweep_run_dir(tmp_path: Path, tiny_config: Config) -> Path:
    """A run dir with a sweep manifest, its sqlite store, the parent run and two finished trial runs."""
    run_dir = tmp_path / "runs" / "ui-sweep"
    config = tiny_config.with_overrides({"name": "ui-sweep"})
    uri = tracking.default_tracking_uri(run_dir)
    client = tracking.connect(uri)
    experiment_id = tracking.ensure_experiment(
        client, config.tracking.experiment, tracking.default_artifact_location(run_dir)
    )
    tracking.share_runs_view(client, experiment_id, ["sparse", "attention"], [])
    parent = tracking.start_sweep_run(
        client, experiment_id, config.name, config.model_dump(mode="json"), run_dir
    )
    manifest = SweepManifest(
        name=config.name,
        run_dir=str(run_dir.resolve()),
        experiment_path=str(run_dir / "tune"),
        tracking_uri=uri,
        experiment_id=experiment_id,
        parent_run_id=parent,
        config=config.model_dump(mode="json"),
    )
    manifest.save()
    for index, (name, weights) in enumerate(TRIALS.items()):
        trial = tracking.TrialTracker(manifest.tracking_target, f"t{index}", name)
        trial.log_start({"weights": weights})
        for epoch in (1, 2):
            trial.log_epoch(
                epoch,
                {"val_reward": 0.1 * epoch + index, "val_reward_sem": 0.01, "train_reward": 0.05 * epoch},
            )
        trial.finish()
    return run_dir


@pytest.fixture()
def ui_url(sweep_run_dir: Path) -> Iterator[str]:
    """`dense-reward ui --run-dir ...` running; yields the URL it prints; SIGTERM at the end."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "dense-reward"), "ui", "--run-dir", str(sweep_run_dir), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("http://"):
                break
        assert lines and lines[-1].startswith("http://"), f"no URL printed: {lines}"
        yield lines[-1].strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    # The command stops its server with it: nothing keeps listening on the port.
    assert proc.returncode == 0
    assert not port_open(port)


@pytest.mark.timeout(300)
def test_ui_shows_the_sweeps_trial_runs_in_chromium(ui_url: str, sweep_run_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert ui_url.startswith("http://127.0.0.1:")
    assert ui_url.endswith(f"/#/experiments/1/runs?viewStateShareKey={tracking.RUNS_VIEW_KEY}")
    # Bound to loopback only: this host's other addresses do not answer on the UI's port.
    port = int(ui_url.split(":")[2].split("/")[0])
    for address in other_addresses():
        with socket.socket() as sock:
            sock.settimeout(2)
            assert sock.connect_ex((address, port)) != 0, f"the UI answers on {address}:{port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(ui_url)
            page.get_by_role("row").filter(has_text="ui-sweep").wait_for(timeout=90_000)
            # The sweep's stored view: trials best first, with val_reward, its standard error and the
            # weights as columns, no column picking needed.
            headers = {h.inner_text().strip() for h in page.get_by_role("columnheader").all()}
            assert {"val_reward", "val_reward_sem", "weights.sparse", "weights.attention"} <= headers
            rows = [r.inner_text() for r in page.get_by_role("row").all()]
            trial_rows = [r for r in rows if "trial_000" in r]
            assert [next(name for name in TRIALS if name in r) for r in trial_rows] == [
                "trial_0001",
                "trial_0000",
            ]
            # trial_0001's last val_reward and its attention weight are shown as values.
            assert page.get_by_text("1.2", exact=True).count() == 1
            assert page.get_by_text("0.7", exact=True).count() == 1
            page.get_by_role("link", name="trial_0001").click()
            page.get_by_text("val_reward").first.wait_for(timeout=30_000)
        finally:
            browser.close()


def test_ui_names_a_missing_run(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN / "dense-reward"), "ui", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "unknown run" in done.stderr and "nowhere" in done.stderr


def test_ui_of_a_sweep_on_an_mlflow_server_points_at_that_server(tmp_path: Path, tiny_config: Config) -> None:
    run_dir = tmp_path / "remote"
    run_dir.mkdir()
    SweepManifest(
        name="remote",
        run_dir=str(run_dir),
        experiment_path=str(run_dir / "tune"),
        tracking_uri="http://mlflow.internal:5000",
        experiment_id="7",
        parent_run_id="abc",
        config=tiny_config.model_dump(mode="json"),
    ).save()
    done = subprocess.run(
        [str(BIN / "dense-reward"), "ui", str(run_dir)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == (
        f"http://mlflow.internal:5000/#/experiments/7/runs?viewStateShareKey={tracking.RUNS_VIEW_KEY}"
    )
