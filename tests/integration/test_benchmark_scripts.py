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
        "sparse", "attention", "gradient", "gradient@zero", "log_ratio", "integrated_gradients@2", "redistribution",
        "shap@8", "shap@12", "lime@8", "lime@12",
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
    # log_ratio reads two policies and no RM: two policy forwards per explained batch of 3 responses.
    assert report["sources"]["log_ratio"]["rm_forward_calls_per_response"] == 0.0
    assert report["sources"]["log_ratio"]["policy_forward_calls_per_response"] == pytest.approx(2 / 3)
    assert report["sources"]["integrated_gradients@2"]["rm_sequences_per_response"] > 2

    # --only measures the rows named and merges them into the outputs already there.
    earlier = json.loads((tmp_path / "fidelity.json").read_text())
    dropped = earlier["sources"].pop("integrated_gradients@2")
    del earlier["per_response_spearman"]["integrated_gradients@2"]
    (tmp_path / "fidelity.json").write_text(json.dumps(earlier))
    assert fidelity.main([*argv, "--only", "integrated_gradients@2", "sparse"]) == 0
    merged = json.loads((tmp_path / "fidelity.json").read_text())
    assert list(merged["sources"]) == [*earlier["sources"], "integrated_gradients@2"]
    assert merged["sources"]["shap@12"] == earlier["sources"]["shap@12"]
    assert merged["sources"]["integrated_gradients@2"]["spearman"] == dropped["spearman"]
    assert merged["settings"]["merged_runs"][-1]["rows"] == ["sparse", "integrated_gradients@2"]
    assert len(merged["per_response_spearman"]["integrated_gradients@2"]) == 6
    assert "Rows sparse, integrated_gradients@2 measured in a later run" in (tmp_path / "fidelity.md").read_text()
    with pytest.raises(SystemExit, match="other responses"):
        fidelity.main([*argv, "--seed", "1", "--only", "sparse"])

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
