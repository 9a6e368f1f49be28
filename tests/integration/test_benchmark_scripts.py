"""The evidence benchmarks (fidelity, paper claims) run end to end at a tiny size on the builtin tiny models."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.support.paths import BENCHMARKS


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module executes
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(300)
def test_fidelity_smoke_writes_every_source_and_reuses_its_responses(tmp_path: Path) -> None:
    fidelity = load_script("fidelity")
    argv = ["--smoke", "--out-dir", str(tmp_path), "--plot", str(tmp_path / "fidelity.png")]
    assert fidelity.main(argv) == 0

    report = json.loads((tmp_path / "fidelity.json").read_text())
    assert report["complete"]
    assert set(report["sources"]) == {
        "sparse", "attention", "gradient", "redistribution", "shap@8", "shap@12", "lime@8", "lime@12"
    }
    assert report["responses_total"] == 6
    # The hand-written replies carry sentiment words, so some responses have gold credit to rank.
    assert report["responses_scored"] >= 1
    assert report["responses_scored"] + report["responses_constant_gold"] + report["responses_unsplittable"] == 6
    for label, row in report["sources"].items():
        assert row["responses_scored"] == report["responses_scored"], label
        assert -1.0 <= row["spearman"]["median"] <= 1.0, label
        assert row["spearman"]["q25"] <= row["spearman"]["median"] <= row["spearman"]["q75"], label
        scored = [r for r in report["per_response_spearman"][label] if r is not None]
        assert len(scored) == report["responses_scored"], label
    assert report["sources"]["sparse"]["rm_sequences_per_response"] == 0.0
    assert report["sources"]["shap@12"]["rm_sequences_per_response"] > report["sources"]["gradient"]["rm_sequences_per_response"]
    assert "| shap@12 |" in (tmp_path / "fidelity.md").read_text()
    assert (tmp_path / "fidelity.png").stat().st_size > 0

    cache = tmp_path / "fidelity_responses.json"
    before = cache.stat().st_mtime_ns
    rows = fidelity.sample_responses(fidelity.parse_args(argv))
    assert rows == json.loads(cache.read_text())["rows"]
    assert cache.stat().st_mtime_ns == before


@pytest.mark.timeout(300)
def test_paper_claims_smoke_runs_every_arm_and_resumes(tmp_path: Path) -> None:
    claims = load_script("paper_claims")
    common = ["--smoke", "--out-dir", str(tmp_path), "--plot", str(tmp_path / "claims.png")]
    bo = ["--best-weights", '{"redistribution": 1, "sparse": 3}']
    assert claims.main([*common, *bo, "--arms", "sparse", "bo"]) == 0

    report = json.loads((tmp_path / "paper_claims.json").read_text())
    assert [(run["arm"], run["seed"]) for run in report["runs"]] == [("sparse", 0), ("bo", 0)]
    assert report["runs"][1]["weights"] == {"redistribution": 0.25, "sparse": 0.75}
    for run in report["runs"]:
        assert [point["step"] for point in run["evaluations"]] == [0, 1, 2]
        assert all(point["gold_reward"] is not None for point in run["evaluations"])
        assert [step["step"] for step in run["steps"]] == [1, 2]
        assert all(math.isfinite(step["value_loss"]) for step in run["steps"])
    assert set(report["summary"]["arms"]) == {"sparse", "bo"}
    assert "| bo |" in (tmp_path / "paper_claims.md").read_text()
    assert (tmp_path / "claims.png").stat().st_size > 0

    sparse_seconds = report["runs"][0]["seconds"]
    assert claims.main([*common, *bo, "--arms", "sparse", "abc", "bo", "--resume"]) == 0
    resumed = json.loads((tmp_path / "paper_claims.json").read_text())
    assert [(run["arm"], run["seed"]) for run in resumed["runs"]] == [("sparse", 0), ("bo", 0), ("abc", 0)]
    assert resumed["runs"][0]["seconds"] == sparse_seconds
    assert resumed["runs"][2]["weights"] == {"attention": 0.8, "sparse": 0.2}


def test_paper_claims_reuses_the_runs_of_an_arm_with_equal_weights(tmp_path: Path) -> None:
    claims = load_script("paper_claims")
    common = ["--smoke", "--out-dir", str(tmp_path), "--plot", str(tmp_path / "claims.png")]
    # The sweep's best is often a baseline: BO weights equal to ABC's are the ABC runs, not new ones.
    assert claims.main([*common, "--best-weights", '{"sparse": 1, "attention": 4}', "--arms", "abc"]) == 0
    first = json.loads((tmp_path / "paper_claims.json").read_text())
    assert claims.main([*common, "--best-weights", '{"sparse": 1, "attention": 4}', "--arms", "abc", "bo", "--resume"]) == 0

    report = json.loads((tmp_path / "paper_claims.json").read_text())
    abc, bo = report["runs"]
    assert (bo["arm"], bo["same_as"]) == ("bo", "abc")
    assert bo["evaluations"] == abc["evaluations"] == first["runs"][0]["evaluations"]
    assert report["summary"]["arms"]["bo"]["value_loss_vs_sparse"] is None
    assert "| bo | attention 0.80, sparse 0.20 (the abc runs) |" in (tmp_path / "paper_claims.md").read_text()


def test_bo_arm_without_weights_is_refused(tmp_path: Path) -> None:
    claims = load_script("paper_claims")
    with pytest.raises(SystemExit, match="--sweep RUN or --best-weights"):
        claims.main(["--smoke", "--arms", "bo", "--out-dir", str(tmp_path)])


@pytest.mark.timeout(300)
def test_searchers_benchmark_runs_one_short_sweep_per_searcher() -> None:
    searchers = load_script("searchers")
    searchers.TRIALS = 7  # 4 quasi-random points, then model-based suggestions beside 3 pending ones
    corner = searchers.make_objective("corner", "heteroscedastic", 4, 0)
    assert corner.best == pytest.approx(max(corner(vertex) for vertex in np.eye(4)), abs=1e-6)
    assert corner.noise_sd(np.eye(4)[corner.noise_source]) == searchers.HETERO_SD[1]
    runs = [searchers.run_one((name, "corner", "heteroscedastic", 4, 4, 0)) for name in searchers.SEARCHERS]
    for run in runs:
        assert 0.0 <= run["regret"] <= corner.best and 0.0 <= run["regret_best_observed"] <= corner.best
        assert run["recommendation"] == "gp" and len(run["suggest_seconds"]) == 7
    cell = ("corner", "heteroscedastic", 4, 4)
    row = next(r for r in searchers.summarise(runs) if (r["shape"], r["noise"], r["d"], r["concurrency"]) == cell)
    assert {name: row[name]["runs"] for name in searchers.SEARCHERS} == dict.fromkeys(searchers.SEARCHERS, 1)
    assert row["lowest"] in searchers.SEARCHERS


@pytest.mark.timeout(900)
def test_gym_claims_smoke_tests_every_arm_against_sparse_and_scores_fidelity(tmp_path: Path) -> None:
    claims = load_script("gym_claims")
    argv = ["--smoke", "--out-dir", str(tmp_path), "--plot", str(tmp_path / "gym.png")]
    assert claims.main([*argv, "--best-weights", '{"redistribution": 1, "sparse": 1}']) == 0
    report = json.loads((tmp_path / "gym_claims.json").read_text())
    part = report["lengths"]["8"]
    assert sorted({(run["arm"], run["seed"]) for run in part["runs"]}) == [
        (arm, seed) for arm in ("abc", "given", "sparse", "uniform") for seed in (0, 1)
    ]
    assert all(len(run["evaluations"]) == 3 for run in part["runs"])
    arms = part["summary"]["arms"]
    assert arms["given"]["weights"] == {"redistribution": 0.5, "sparse": 0.5}
    assert arms["sparse"]["vs_sparse"] is None
    assert arms["uniform"]["vs_sparse"]["seeds"] == 2 and arms["uniform"]["gold_final_ci95"] >= 0.0
    # Fidelity against the exact gold credit: a correlation per source, and the sparse one-hot is no credit map.
    assert set(part["fidelity"]) == {"sparse", "attention", "redistribution", "shap", "lime"}
    assert all(-1.0 <= value <= 1.0 for value in part["fidelity"].values())
    assert part["fidelity"]["redistribution"] > part["fidelity"]["sparse"]
    assert "## 8-word responses" in (tmp_path / "gym_claims.md").read_text()
    assert (tmp_path / "gym.png").stat().st_size > 0
