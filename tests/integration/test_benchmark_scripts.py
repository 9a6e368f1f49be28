"""The benchmark scripts (fidelity, paper claims, searchers, attribution) run end to end at a tiny size on tiny models."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from dense_reward.simplex import SOURCES
from tests.support.paths import BENCHMARKS, TINY_CONFIG


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
        "sparse", "attention", "log_ratio", "integrated_gradients@2", "redistribution",
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
    assert report["sources"]["shap@12"]["rm_sequences_per_response"] > report["sources"]["attention"]["rm_sequences_per_response"]
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


@pytest.mark.timeout(900)  # builds credit-gym-policy and credit-gym-rm into the test cache first
def test_fidelity_smoke_on_the_gym_scores_against_its_exact_gold(tmp_path: Path) -> None:
    fidelity = load_script("fidelity")
    argv = ["--task", "gym", "--smoke", "--out-dir", str(tmp_path), "--plot", str(tmp_path / "gym.png")]
    assert fidelity.main([*argv, "--only", "sparse", "attention", "integrated_gradients@2", "redistribution"]) == 0

    report = json.loads((tmp_path / "fidelity_gym.json").read_text())
    assert (tmp_path / "fidelity_gym_responses.json").is_file() and not (tmp_path / "fidelity.json").exists()
    assert report["settings"]["task"] == "gym"
    assert report["settings"]["policy"] == "builtin:credit-gym-policy"
    assert report["settings"]["reward_model"] == "builtin:credit-gym-rm"
    assert list(report["sources"]) == ["sparse", "attention", "integrated_gradients@2", "redistribution"]
    # Six sampled responses of ten made-up words: the exact gold credits some of them.
    assert report["responses_total"] == 6
    assert report["responses_scored"] >= 1
    assert report["responses_scored"] + report["responses_constant_gold"] + report["responses_unsplittable"] == 6
    assert report["responses_unsplittable"] == 0
    for label, row in report["sources"].items():
        assert row["responses_scored"] == report["responses_scored"], label
        assert -1.0 <= row["spearman"]["median"] <= 1.0, label
    assert report["sources"]["redistribution"]["rm_sequences_per_response"] > 1
    text = (tmp_path / "fidelity_gym.md").read_text()
    assert text.startswith("# Credit-assignment fidelity on the gym task")
    assert "exact per-word gold credit" in text
    assert (tmp_path / "gym.png").stat().st_size > 0


def test_gym_gold_moves_onto_policy_tokens_with_its_total() -> None:
    from dense_reward.builtin.gym import task

    fidelity = load_script("fidelity")
    w = task.world()
    good, bad = sorted(w.good)[0], sorted(w.bad)[0]
    paired = {word for pair in w.pairs for word in pair}
    neutral = next(word for word in w.words if word not in w.good | w.bad | w.openers | w.closers | paired)
    text = f"{neutral} {good} {neutral} {neutral} {bad} {neutral}"
    offsets = [(0, 4), (4, 9), (9, 14), (14, 19), (19, 24), (24, 29), (29, 29)]  # word spans, then an EOS
    credit = fidelity.gym_token_credit(text, offsets)
    np.testing.assert_allclose(credit, [0.0, 0.1, 0.0, 0.0, -0.1, 0.0, 0.0])
    assert credit.sum() == pytest.approx(task.gold_reward([text])[0])


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
    markdown = (tmp_path / "paper_claims.md").read_text()
    assert "| bo |" in markdown and "BO weights: given on the command line (--best-weights)." in markdown
    assert (tmp_path / "claims.png").stat().st_size > 0

    sparse_seconds = report["runs"][0]["seconds"]
    assert claims.main([*common, *bo, "--arms", "sparse", "abc", "bo", "--resume"]) == 0
    resumed = json.loads((tmp_path / "paper_claims.json").read_text())
    assert [(run["arm"], run["seed"]) for run in resumed["runs"]] == [("sparse", 0), ("bo", 0), ("abc", 0)]
    assert resumed["runs"][0]["seconds"] == sparse_seconds
    assert resumed["runs"][2]["weights"] == {"attention": 0.8, "sparse": 0.2}
    assert {run["normalize"] for run in resumed["runs"]} == {"softmax"}

    # Another normaliser: runs on sparse and attention alone carry over, the bo run (redistribution) does not.
    other = [*common, *bo, "--arms", "sparse", "abc", "bo", "--resume", "--report-only", "--normalize", "scaled-softmax"]
    assert claims.main(other) == 0
    rescaled = json.loads((tmp_path / "paper_claims.json").read_text())
    assert [(run["arm"], run["seed"]) for run in rescaled["runs"]] == [("sparse", 0), ("abc", 0)]
    assert rescaled["settings"]["normalize"] == "scaled-softmax"
    assert "normaliser scaled-softmax (tau 1.0)" in (tmp_path / "paper_claims.md").read_text()


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
    cell = searchers.parse_cell("corner/heteroscedastic/4/4")
    assert cell == ("corner", "heteroscedastic", 4, 4)
    with pytest.raises(argparse.ArgumentTypeError, match="corner/heteroscedastic/5/4"):
        searchers.parse_cell("corner/heteroscedastic/5/4")
    (row,) = searchers.summarise(runs, [cell])
    assert {name: row[name]["runs"] for name in searchers.SEARCHERS} == dict.fromkeys(searchers.SEARCHERS, 1)
    assert row["lowest"] in searchers.SEARCHERS
    yardstick = searchers.host_loop_seconds()
    assert yardstick > 0
    meta = {
        "trials": 7, "n_init": 5, "seeds": 1, "command": "python tests/benchmarks/searchers.py",
        "minutes": 0.5, "cpus": 2, "load_at_start": 0.0, "host_loop_seconds": yardstick,
        "botorch_gp_suggestion_wall_p50_in_sweeps": 0.1, "botorch_gp_suggestion_wall_p95_in_sweeps": 0.2,
    }
    report = searchers.markdown(searchers.summarise(runs), [], meta)
    assert f"of small torch ops took {yardstick:.3f} s" in report
    assert "| corner | hetero. | 4 | 4 |" in report
    # Every timed suggestion is made twice from one state; the tries must agree (else it raises).
    latency = searchers.botorch_latency(4, suggestions=2, repeats=2)
    assert latency["repeats"] == 2 and 0 < latency["wall_p50"] <= latency["wall_p95"]
    assert 0 < latency["first_try_wall_p50"] <= latency["first_try_wall_p95"]
    meta.update(
        latency_command="python tests/benchmarks/searchers.py", latency_load_at_start=0.0,
        latency_host_loop_seconds=yardstick,
    )
    report = searchers.markdown(searchers.summarise(runs), [latency], meta)
    assert f"| 4 | 2 | {latency['wall_p50']:.2f} | {latency['wall_p95']:.2f} |" in report


@pytest.mark.timeout(300)
def test_attribution_smoke_compares_shap_and_lime_with_the_plain_loops(tmp_path: Path) -> None:
    attribution = load_script("attribution")
    assert attribution.main(["--smoke", "--threads", "0", "--out", str(tmp_path)]) == 0

    report = json.loads((tmp_path / "attribution.json").read_text())
    assert set(report["models"]) == {"fixture", "causal"}
    causal = report["models"]["causal"]
    assert causal["prompt_rm_tokens"] >= 40
    for name, result in report["models"].items():
        assert set(result["sources"]) == set(SOURCES), name
        for source in ("shap", "lime"):
            comparison = result["vs_plain"][source]
            assert comparison["same_within_1e-5"], (name, source)
            assert comparison["prompt_cache"] == (name == "causal")
            assert len(comparison["ratios"]) == 1
            # Merged calls: fewer RM sequences than the plain loop, never more.
            assert comparison["ours_rm_sequences_per_response"] <= comparison["plain_rm_sequences_per_response"]
    assert causal["vs_plain"]["shap"]["ours_forward_calls_per_response"] < (
        causal["vs_plain"]["shap"]["plain_forward_calls_per_response"]
    )
    table = (tmp_path / "attribution.md").read_text()
    assert "| causal | shap |" in table and "| fixture | lime |" in table


GPU_CHECK_NEEDS_NONE_OF = "ray,mlflow,botorch,gpytorch,optuna,captum,tune_jobs"


@pytest.mark.timeout(600)
def test_gpu_check_smoke_runs_on_cpu_without_ray_mlflow_botorch_optuna_captum(tmp_path: Path) -> None:
    """The GPU check at tiny sizes on the CPU, in a process where the service's packages cannot be imported."""
    import subprocess

    from dense_reward.attribution.registry import EXPLAINERS

    script = BENCHMARKS / "gpu_check.py"
    command = [
        sys.executable, "-m", "tests.support.blocked_imports", GPU_CHECK_NEEDS_NONE_OF, str(script),
        "--device", "cpu", "--smoke", "--out", str(tmp_path),
    ]
    done = subprocess.run(command, cwd=BENCHMARKS.parents[1], capture_output=True, text=True, timeout=580)
    assert done.returncode == 0, done.stderr[-3000:]

    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["environment"]["reward_model_dtype"] == "float32"
    (ppo,) = report["ppo"].values()
    assert ppo["tokens_per_second"] > 0 and ppo["peak_memory_mb"] > 0 and ppo["timed_steps"] == 1
    assert set(report["attribution"]) == {"bert-base", "smollm2-135m-rm"}
    for name, row in report["attribution"].items():
        # Every registered source is either timed or listed as skipped with its reason.
        assert set(row["seconds_per_response"]) | set(row["skipped_sources"]) == set(EXPLAINERS), name
        assert {"shap", "lime"} <= set(row["seconds_per_response"]), name
        assert row["prompt_cache"] == (name == "smollm2-135m-rm")
        for source in ("shap", "lime"):
            assert row["vs_plain"][source]["max_abs_difference"] <= 1e-5, (name, source)
            assert row["vs_plain"][source]["ratio"] > 0
    assert report["attribution"]["smollm2-135m-rm"]["prompt_rm_tokens"] > report["attribution"]["bert-base"][
        "prompt_rm_tokens"
    ]
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| tiny-llama |" in table and "## Attribution on smollm2-135m-rm" in table


def test_blocked_imports_refuses_exactly_the_blocked_packages(tmp_path: Path) -> None:
    import subprocess

    script = tmp_path / "imports.py"
    script.write_text("import json\nimport mlflow\n")
    command = [sys.executable, "-m", "tests.support.blocked_imports", "mlflow,ray", str(script)]
    done = subprocess.run(command, cwd=BENCHMARKS.parents[1], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "No module named 'mlflow'" in done.stderr
    assert "blocked imports refused: ['mlflow']" in done.stderr


def test_ppo_vs_trl_smoke_measures_our_side(tmp_path: Path) -> None:
    # The trl sides need trl 1.12.0 in a venv of its own (see the script); the smoke run is ours alone.
    ppo_vs_trl = load_script("ppo_vs_trl")
    assert ppo_vs_trl.main(["--smoke", "--out-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "ppo_vs_trl.json").read_text())
    assert report["sides"] == ["ours"]
    run = report["ours"]["runs"][0]
    assert run["timed_steps"] == 2 and run["tokens"] == 2 * 4 * 8
    assert run["tokens_per_second"] > 0 and run["tokens_per_cpu_second"] > 0
    assert 100 < report["ours"]["peak_rss_mb"] < 100_000
    assert "| ours |" in (tmp_path / "ppo_vs_trl.md").read_text()


@pytest.mark.timeout(600)
def test_trial_memory_smoke_measures_both_sides_per_trial(tmp_path: Path) -> None:
    trial_memory = load_script("trial_memory")
    assert trial_memory.main(["--smoke", "--out-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "trial_memory.json").read_text())
    # Each point runs in a plain process with glibc, then with the private Ray's allocator (Ray ships jemalloc).
    points = report["config"]["search"]["points_to_evaluate"]
    assert [(plain["weights"], plain["allocator"]) for plain in report["plain"]] == [
        (weights, allocator) for weights in points for allocator in ("glibc", "jemalloc")
    ]
    for plain in report["plain"]:
        ray_trial = trial_memory.matching_trial(report["ray"]["trials"], plain["weights"])
        assert 100 < plain["peak_rss_mb"] < 100_000 and 100 < ray_trial["peak_rss_mb"] < 100_000
    worker = report["ray"]["largest_ray_processes"][0]
    assert worker["name"].startswith("ray::") and worker["peak_rss_mb"] > 100
    assert worker["allocator"] == "jemalloc"
    assert "| 2 |" in (tmp_path / "trial_memory.md").read_text()


@pytest.mark.timeout(900)
def test_gym_claims_smoke_tests_every_arm_against_sparse_and_scores_fidelity(tmp_path: Path) -> None:
    claims = load_script("gym_claims")
    argv = ["--smoke", "--out-dir", str(tmp_path), "--plot", str(tmp_path / "gym.png"), "--normalize", "scaled-softmax"]
    assert claims.main([*argv, "--best-weights", '{"redistribution": 1, "sparse": 1}']) == 0
    report = json.loads((tmp_path / "gym_claims.json").read_text())
    assert report["settings"]["normalize"] == "scaled-softmax"
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
    markdown = (tmp_path / "gym_claims.md").read_text()
    assert "## 8-word responses" in markdown and "normaliser scaled-softmax (tau 1.0)" in markdown
    assert (tmp_path / "gym.png").stat().st_size > 0


@pytest.mark.timeout(600)
def test_demo_step_smoke_times_every_phase_of_each_variant(tmp_path: Path) -> None:
    demo_step = load_script("demo_step")
    out = tmp_path / "rows.jsonl"
    tiny = TINY_CONFIG
    argv = [
        "--config", str(tiny), "--steps", "2", "--out", str(out),
        "--variant", "critic:models.value.head_on_policy=false",
        "--variant", "head:models.value.head_on_policy=true",
        "--weights", '{"sparse": 1.0}', "--weights", '{"sparse": 0.5, "lime": 0.5}',
    ]  # fmt: skip
    assert demo_step.main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(row["variant"], row["weights"].get("lime", 0.0)) for row in rows] == [
        ("critic", 0.0), ("head", 0.0), ("critic", 0.5), ("head", 0.5),
    ]  # fmt: skip
    for row in rows:
        for key in ("generation_seconds", "forward_seconds", "update_seconds", "step_seconds", "step_cpu_seconds"):
            assert len(row[key]) == 2 and all(value > 0 for value in row[key]), key
        assert row["evaluation_seconds"] > 0 and row["heatmap_seconds"] > 0
        assert math.isfinite(row["val_reward"])
    # LIME runs only where it carries weight: its RM forwards dwarf the sparse source's bookkeeping.
    for sparse_only, with_lime in ((rows[0], rows[2]), (rows[1], rows[3])):
        assert min(with_lime["attribution_seconds"]) > 10 * max(sparse_only["attribution_seconds"])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        demo_step.main(["--config", str(tiny), "--variant", "bad:models.value.head_on_policy"])


@pytest.mark.timeout(300)
def test_credit_spread_benchmark_reports_every_source_and_setting(tmp_path) -> None:
    spreads = load_script("credit_spread")
    config = Path(__file__).resolve().parents[2] / "tune_jobs" / "configs" / "tiny.yaml"
    assert spreads.main(["--config", str(config), "--prompts", "4", "--out-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "credit_spread_tiny.json").read_text())
    sources = ["sparse", "attention", "redistribution", "shap", "lime"]
    assert set(result["credit_span"]) == set(sources)
    assert [(row["normalize"], row["tau"]) for row in result["settings"]] == list(spreads.SETTINGS)
    for row in result["settings"]:
        assert set(row["spread"]) == set(sources)
        assert all(0.0 <= value < 1.0 for value in row["spread"].values())
        assert len(row["pairwise"]) == len(sources) * (len(sources) - 1) // 2
    by_setting = {(row["normalize"], row["tau"]): row["spread"] for row in result["settings"]}
    # Distributions are only renormalised; a smaller tau in credit-sd units sharpens the others.
    assert by_setting[("softmax", 1.0)]["attention"] == by_setting[("l1", 1.0)]["attention"]
    for name in ("redistribution", "shap", "lime"):
        assert by_setting[("scaled-softmax", 0.5)][name] > by_setting[("scaled-softmax", 2.0)][name]
    report = (tmp_path / "credit_spread_tiny.md").read_text()
    assert "| scaled-softmax | 1 |" in report and "tiny.yaml" in report
