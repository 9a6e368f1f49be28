"""`dense-reward sweep/results/final` on bad input (one clear error, nothing started or lost), the
tracking store a sweep picks, and the results table, summary, CSV and plots of a sweep."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import yaml
from rich.console import Console

from tests.support.paths import TINY_CONFIG
from tune_jobs import tracking
from tune_jobs.cli import main
from tune_jobs.console import print_comparison, print_summary, render_table
from tune_jobs.plots import convergence_plot, weights_plot
from tune_jobs.results import Recommended, SweepResults, TrialRow, write_csv
from tune_jobs.rundir import MANIFEST, SweepManifest, session_folder_note


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def tiny_yaml(tmp_path: Path, **sections: dict) -> Path:
    data = yaml.safe_load(TINY_CONFIG.read_text())
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def assert_nothing_started(run_dir: Path) -> None:
    assert not (run_dir / "tune").exists()
    assert not (run_dir / MANIFEST).exists()


def test_unknown_run_is_one_line_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = run_cli(["results", str(tmp_path / "nope")], capsys)
    assert code == 2
    assert "unknown run" in err and "nope" in err
    assert len(err.strip().splitlines()) == 1
    code, err = run_cli(["final", str(tmp_path / "nope"), "--steps", "1"], capsys)
    assert code == 2
    assert "unknown run" in err


def test_missing_config_and_bad_override(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = run_cli(["sweep", str(tmp_path / "missing.yaml")], capsys)
    assert code == 2
    assert "config file not found" in err
    code, err = run_cli(
        ["sweep", str(TINY_CONFIG), "--trials", "0", "--run-dir", str(tmp_path / "r")], capsys
    )
    assert code == 2
    assert "search.trials" in err
    assert_nothing_started(tmp_path / "r")


def test_unreachable_tracking_server_is_one_short_line_before_models_load(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The policy path is bad too: the tracking store is checked first, before any model is looked at.
    config = tiny_yaml(
        tmp_path, tracking={"uri": "http://127.0.0.1:9"}, models={"policy": {"path": "builtin:nope"}}
    )
    run_dir = tmp_path / "run"
    code, err = run_cli(["sweep", str(config), "--run-dir", str(run_dir)], capsys)
    assert code == 2
    assert err.strip() == (
        "dense-reward sweep: error: tracking.uri: cannot reach the MLflow store 'http://127.0.0.1:9': connection refused"
    )
    assert not run_dir.exists()


def test_mlflow_tracking_uri_from_the_environment_is_honoured_and_the_config_wins(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:8")
    run_dir = tmp_path / "run"
    code, err = run_cli(["sweep", str(tiny_yaml(tmp_path)), "--run-dir", str(run_dir)], capsys)
    assert code == 2 and "'http://127.0.0.1:8'" in err
    code, err = run_cli(
        [
            "sweep",
            str(tiny_yaml(tmp_path, tracking={"uri": "http://127.0.0.1:9"})),
            "--run-dir",
            str(run_dir),
        ],
        capsys,
    )
    assert code == 2 and "'http://127.0.0.1:9'" in err
    assert not run_dir.exists()
    assert tracking.tracking_uri_for(None, run_dir, {}) == (tracking.default_tracking_uri(run_dir), True)
    assert tracking.tracking_uri_for(None, run_dir, {"MLFLOW_TRACKING_URI": "sqlite:////x.db"}) == (
        "sqlite:////x.db",
        False,
    )


def test_a_run_dir_in_rays_session_folder_is_named_as_such(tmp_path: Path) -> None:
    session = tmp_path / "ray" / "session_2026-01-01_00-00-00_000000_1"
    working_dir = session / "runtime_resources" / "working_dir_files" / "_ray_pkg_abc"
    working_dir.mkdir(parents=True)
    note = session_folder_note(working_dir / "runs" / "demo")
    assert note is not None and str(session) in note and "resources.storage_path" in note
    assert session_folder_note(tmp_path / "runs" / "demo") is None
    # A folder merely named like a session is not one.
    assert session_folder_note(tmp_path / "session_notes" / "runs" / "demo") is None


def test_bad_model_path_stops_before_any_trial(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = yaml.safe_load(TINY_CONFIG.read_text())
    data["models"]["policy"]["path"] = "builtin:no-such-model"
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "run"
    code, err = run_cli(["sweep", str(config), "--run-dir", str(run_dir)], capsys)
    assert code == 2
    assert "models.policy" in err and "no-such-model" in err
    assert_nothing_started(run_dir)


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"cpus_per_trial": 1000}, "resources.cpus_per_trial"),
        ({"gpus_per_trial": 64}, "resources.gpus_per_trial"),
        ({"custom_per_trial": {"trial_slot": 1}}, "resources.custom_per_trial.trial_slot"),
    ],
)
def test_a_trial_too_big_for_the_private_ray_is_one_error_before_anything_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, resources: dict, field: str
) -> None:
    # Ray would queue the trial and wait forever, warning once a minute.
    run_dir = tmp_path / "run"
    code, err = run_cli(["sweep", str(tiny_yaml(tmp_path, resources=resources)), "--run-dir", str(run_dir)], capsys)
    assert code == 2
    assert err.startswith(f"dense-reward sweep: error: {field}: a trial asks for ")
    assert "no trial could start" in err and "--address" in err
    assert len(err.strip().splitlines()) == 1
    assert not run_dir.exists()


def test_resume_needs_an_existing_sweep(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = run_cli(["sweep", str(TINY_CONFIG), "--resume", "--run-dir", str(tmp_path / "empty")], capsys)
    assert code == 2
    assert "holds no sweep" in err
    code, err = run_cli(["sweep", "--resume"], capsys)
    assert code == 2
    assert "--name or --run-dir" in err


def test_an_existing_sweep_is_never_overwritten(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    manifest = run_dir / MANIFEST
    recorded = json.dumps(
        {
            "name": "earlier",
            "run_dir": str(run_dir),
            "experiment_path": str(run_dir / "tune"),
            "tracking_uri": f"sqlite:///{run_dir / 'mlflow.db'}",
            "experiment_id": "1",
            "parent_run_id": "a" * 32,
            "config": {},
        }
    )
    manifest.write_text(recorded)
    code, err = run_cli(["sweep", str(TINY_CONFIG), "--run-dir", str(run_dir)], capsys)
    assert code == 2
    assert "already holds sweep 'earlier'" in err and "--resume" in err
    assert manifest.read_text() == recorded


def synthetic_results() -> SweepResults:
    rows = [
        TrialRow("abc_00000", "TERMINATED", {"sparse": 1.0, "attention": 0.0}, {}, 2, 0.1, 0.2, "/c0"),
        TrialRow(
            "abc_00001",
            "TERMINATED",
            {"sparse": 0.3, "attention": 0.7},
            {"ppo.kl_coef": 0.1},
            2,
            0.5,
            0.6,
            "/c1",
        ),
        TrialRow(
            "abc_00002", "ERROR", {"sparse": 0.5, "attention": 0.5}, {}, 1, None, None, None, num_failures=2
        ),
    ]
    rows[0].val_reward_sem, rows[0].best_val_reward_sem = 0.01, 0.02
    rows[1].val_reward_sem, rows[1].best_val_reward_sem = 0.3, 0.25
    rows[1].metrics = {"gold_reward": 0.42}
    # The GP's answer is the steady sparse trial, not the lucky noisy one.
    recommended = Recommended("abc_00000", {"weights": {"sparse": 1.0, "attention": 0.0}}, 0.15, 0.12, 0.18)
    return SweepResults(
        "demo", "/runs/demo", "sqlite:///x.db", "p", ["sparse", "attention"], rows, recommended
    )


def test_best_observed_and_recommended_are_told_apart() -> None:
    results = synthetic_results()
    assert results.best is not None and results.best.trial_id == "abc_00001"
    assert results.best.trial_config == {"weights": {"sparse": 0.3, "attention": 0.7}, "ppo.kl_coef": 0.1}
    assert results.recommended_trial is results.trials[0]
    payload = json.loads(json.dumps(results.to_dict()))
    assert payload["best_observed"]["trial_id"] == "abc_00001"
    assert payload["recommended"]["trial_id"] == "abc_00000"
    assert payload["recommended"]["lower"] == 0.12 and payload["recommended"]["upper"] == 0.18
    assert [t["val_reward_sem"] for t in payload["trials"]] == [0.01, 0.3, None]


def test_table_and_summary_show_the_standard_error_and_both_answers() -> None:
    results = synthetic_results()
    manifest = SweepManifest("demo", "/runs/demo", "/runs/demo/tune", "sqlite:///x.db", "1", "p", {})
    out = Console(file=io.StringIO(), width=250)
    assert render_table(results).row_count == 3
    assert print_summary(out, results, manifest)
    text = out.file.getvalue()
    assert "0.1000 ± 0.0100" in text and "0.6000 ± 0.2500" in text
    lines = text.splitlines()
    best = next(line for line in lines if line.startswith("best observed:"))
    assert "sparse=0.300, attention=0.700" in best and "0.6000 ± 0.2500" in best and "abc_00001" in best
    recommended = next(line for line in lines if line.startswith("recommended:"))
    assert "weights sparse=1.000, attention=0.000, val_reward GP posterior mean 0.1500 [0.1200, 0.1800]" in recommended
    assert "recommended checkpoint:   /c0" in text


def test_the_table_numbers_its_rows_as_the_summary_numbers_trials() -> None:
    results = synthetic_results()
    for number, row in enumerate(results.trials, start=1):
        row.index = number
    out = Console(file=io.StringIO(), width=250)
    print_comparison(out, results)
    out.print(render_table(results))
    lines = out.file.getvalue().splitlines()
    assert any("best observed  trial 2 (abc_00001)" in line for line in lines)
    row = next(line for line in lines if "abc_00001" in line and line.startswith("│"))
    assert row.split("│")[1].strip() == "2"


def test_the_demo_compares_recommended_and_best_observed_with_sparse_only() -> None:
    results = synthetic_results()
    out = Console(file=io.StringIO(), width=250)
    print_comparison(out, results)
    lines = [line.strip() for line in out.file.getvalue().splitlines()]
    rows = {line.split(" trial ")[0].strip(): line for line in lines if " trial " in line}
    assert set(rows) == {"recommended", "best observed", "sparse-only"}
    assert "(abc_00000)" in rows["recommended"] and "(abc_00001)" in rows["best observed"]
    assert "the recommended point is the sparse-only baseline" in lines
    # The recommended trial is sparse-only, so the lead tested is the best observed one's: 0.5 - 0.1 against
    # 2 * hypot(0.3, 0.01) = 0.6003.
    lead = next(line for line in lines if line.startswith("best observed - sparse-only:"))
    assert "+0.4000 on the last val_reward, within 2 standard errors (0.6003)" in lead
    assert "does not tell them apart" in lead
    assert any("search.confirm_top_k" in line for line in lines)


def test_a_lead_beyond_the_validation_noise_is_told_so_and_a_confirmed_sweep_gets_no_hint() -> None:
    results = synthetic_results()
    results.trials[1].val_reward_sem = 0.1
    out = Console(file=io.StringIO(), width=250)
    print_comparison(out, results, confirmed=True)
    text = out.file.getvalue()
    assert "+0.4000 on the last val_reward, beyond 2 standard errors (0.2010)" in text
    assert "seed-to-seed spread those errors leave out" in text
    assert "search.confirm_top_k" not in text


def test_csv_and_plots_are_written(tmp_path: Path) -> None:
    results = synthetic_results()
    rows = list(csv.DictReader(write_csv(results, tmp_path / "results.csv").read_text().splitlines()))
    assert [r["trial_id"] for r in rows] == ["abc_00000", "abc_00001", "abc_00002"]
    assert rows[1]["w_attention"] == "0.7" and rows[1]["ppo.kl_coef"] == "0.1"
    assert rows[1]["val_reward_sem"] == "0.3" and rows[1]["best_val_reward_sem"] == "0.25"
    assert rows[2]["best_val_reward"] == "" and rows[2]["val_reward_sem"] == ""
    assert [r["role"] for r in rows] == ["recommended", "best observed", ""]
    assert [r["gold_reward"] for r in rows] == ["", "0.42", ""]
    values = [row.best_val_reward for row in results.trials]
    convergence = convergence_plot(
        values, [row.best_val_reward_sem for row in results.trials], "demo", tmp_path / "c.png"
    )
    weights = weights_plot(
        np.array([[row.weights[s] for s in results.sources] for row in results.trials]),
        values,
        ["#1", "#2", "#3"],
        results.sources,
        "demo",
        tmp_path / "w.png",
    )
    for plot in (convergence, weights):
        image = matplotlib.image.imread(plot)
        assert image.ndim == 3 and image.shape[0] > 100
