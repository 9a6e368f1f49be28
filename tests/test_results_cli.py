"""`dense-reward sweep/results/final` on bad input (one clear error, nothing started or lost), and the
results table, CSV and plots of a sweep."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.image
import pytest
import yaml

from tests.conftest import TINY_CONFIG
from tune_jobs.cli import main
from tune_jobs.results import SweepResults, TrialRow, render_table, write_csv
from tune_jobs.sweep import MANIFEST


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
    code, err = run_cli(["sweep", str(TINY_CONFIG), "--trials", "0", "--run-dir", str(tmp_path / "r")], capsys)
    assert code == 2
    assert "search.trials" in err
    assert_nothing_started(tmp_path / "r")


def test_unreachable_tracking_server_stops_before_any_trial(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tiny_yaml(tmp_path, tracking={"uri": "http://127.0.0.1:9"})
    run_dir = tmp_path / "run"
    code, err = run_cli(["sweep", str(config), "--run-dir", str(run_dir)], capsys)
    assert code == 2
    assert "cannot reach the MLflow store 'http://127.0.0.1:9'" in err
    assert_nothing_started(run_dir)


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
        TrialRow("abc_00001", "TERMINATED", {"sparse": 0.3, "attention": 0.7}, {"ppo.kl_coef": 0.1}, 2, 0.5, 0.6, "/c1"),
        TrialRow("abc_00002", "ERROR", {"sparse": 0.5, "attention": 0.5}, {}, 1, None, None, None, num_failures=2),
    ]
    return SweepResults("demo", "/runs/demo", "sqlite:///x.db", "p", ["sparse", "attention"], rows)


def test_best_trial_csv_and_table() -> None:
    results = synthetic_results()
    assert results.best is not None and results.best.trial_id == "abc_00001"
    assert results.best.trial_config == {"weights": {"sparse": 0.3, "attention": 0.7}, "ppo.kl_coef": 0.1}
    payload = results.to_dict()
    assert payload["best"]["trial_id"] == "abc_00001"
    assert len(payload["trials"]) == 3
    assert render_table(results).row_count == 3


def test_csv_and_plots_are_written(tmp_path: Path) -> None:
    from tune_jobs.plots import convergence_plot, weights_plot

    results = synthetic_results()
    rows = list(csv.DictReader(write_csv(results, tmp_path / "results.csv").open()))
    assert [r["trial_id"] for r in rows] == ["abc_00000", "abc_00001", "abc_00002"]
    assert rows[1]["w_attention"] == "0.7" and rows[1]["ppo.kl_coef"] == "0.1"
    assert rows[2]["best_val_reward"] == ""
    for plot in (convergence_plot, weights_plot):
        image = matplotlib.image.imread(plot(results, tmp_path / f"{plot.__name__}.png"))
        assert image.ndim == 3 and image.shape[0] > 100
