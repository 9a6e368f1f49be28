"""The confirmation phase: its statistics and plan without Ray, then on a real local Ray and MLflow store.

- the t-interval, the paired difference and the "beats the baseline beyond noise" verdicts;
- the plan: top-k distinct points by GP posterior mean, the sparse baseline, fresh seeds shared by all;
- the fixed-list searcher hands out its list once and resumes its position from JSON;
- a sweep with ``search.confirm_top_k`` re-runs the top-k and the baseline with fresh seeds, each re-run
  its own MLflow run, and shows the outcome in `results` (text and JSON);
- the sweep driver SIGKILLed during confirmation: `sweep --resume` keeps the finished re-runs, continues
  the unfinished one from its checkpoint, and leaves no duplicate MLflow run.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import ViewType
from ray.tune import ExperimentAnalysis
from ray.tune.search import Searcher
from rich.console import Console
from scipy import stats

from dense_reward.config import ConfigError
from dense_reward.run import read_run_state
from tests.support.driver_faults import cli, complete_checkpoints, driver_env, kill_session, resume_sweep
from tests.support.paths import TINY_CONFIG
from tests.support.ray_fixtures import ray_local  # noqa: F401
from tune_jobs import tracking
from tune_jobs.cli import main
from tune_jobs.config import SweepConfig, load_sweep_config
from tune_jobs.confirm import (
    BASELINE_LABEL,
    PLAN_FILE,
    Candidate,
    ConfirmationPlan,
    FixedListSearcher,
    Rerun,
    check_config,
    experiment_path,
    fresh_seeds,
    load_confirmation,
    make_plan,
    summarise,
    t_interval,
)
from tune_jobs.console import print_confirmation
from tune_jobs.results import SweepResults, TrialRow
from tune_jobs.rundir import SweepManifest, read_manifest
from tune_jobs.sweep import run_sweep

SOURCES = ["sparse", "attention"]


# --------------------------------------------------------------------------------------------------
# statistics, without Ray
# --------------------------------------------------------------------------------------------------


def test_t_interval_is_the_student_t_interval_of_the_mean() -> None:
    values = [0.41, 0.47, 0.44, 0.52]
    interval = t_interval(values)
    half = stats.t.ppf(0.975, df=3) * np.std(values, ddof=1) / math.sqrt(4)
    assert interval.n == 4
    assert interval.mean == pytest.approx(np.mean(values))
    assert (interval.lower, interval.upper) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    # scipy's own interval for the mean agrees.
    assert (interval.lower, interval.upper) == pytest.approx(
        stats.t.interval(0.95, df=3, loc=np.mean(values), scale=stats.sem(values))
    )
    single = t_interval([0.3])
    assert (single.mean, single.lower, single.upper, single.n) == (0.3, None, None, 1)
    with pytest.raises(ValueError, match="finite"):
        t_interval([])
    with pytest.raises(ValueError, match="finite"):
        t_interval([0.1, float("nan")])


def plan_of(seeds: list[int], labels: list[str]) -> ConfirmationPlan:
    """A plan over 2 sources with candidates `labels` (weights only matter for display)."""
    candidates = [
        Candidate(label, {"weights": {"sparse": 0.5, "attention": 0.5}}, f"trial_{label}", 0.5)
        for label in labels
    ]
    baseline = Candidate(BASELINE_LABEL, {"weights": {"sparse": 1.0, "attention": 0.0}})
    reruns = [Rerun(p.label, s, {**p.config, "seed": s}) for s in seeds for p in [*candidates, baseline]]
    return ConfirmationPlan(seeds, candidates, baseline, reruns)


def test_pairing_by_seed_finds_a_small_steady_gain_that_unpaired_means_miss() -> None:
    seeds = [11, 12, 13, 14]
    seed_effect = np.array([0.30, 0.55, 0.40, 0.65])  # what each seed does to every point, shared
    baseline = seed_effect
    steady = seed_effect + np.array([0.021, 0.019, 0.020, 0.022])  # +0.02 at every seed
    noisy = seed_effect + np.array([0.08, -0.07, 0.05, -0.05])  # no steady gain
    worse = seed_effect - np.array([0.05, 0.06, 0.04, 0.05])
    values = {}
    for label, column in (("#1", steady), ("#2", noisy), ("#3", worse), (BASELINE_LABEL, baseline)):
        values.update({(label, seed): float(v) for seed, v in zip(seeds, column, strict=True)})
    outcome = summarise(plan_of(seeds, ["#1", "#2", "#3"]), values)

    assert outcome.complete and (outcome.finished, outcome.planned) == (16, 16)
    first, second, third = outcome.candidates
    # Unpaired, the steady candidate's interval overlaps the baseline's by far ...
    assert first.mean.lower < outcome.baseline.mean.upper
    # ... paired by seed, its gain is clear.
    assert first.difference.mean == pytest.approx(0.0205)
    assert first.difference.lower > 0 and first.beats_baseline and first.verdict == "beats the baseline"
    assert second.difference.lower < 0 < second.difference.upper
    assert not second.beats_baseline and second.verdict == "within noise"
    assert third.difference.upper < 0 and third.verdict == "worse than the baseline"
    assert outcome.winner is first
    assert outcome.summary().startswith("candidate #1 beats the sparse-only baseline beyond noise")
    assert outcome.baseline.difference is None


def test_no_candidate_beyond_noise_is_said_plainly() -> None:
    seeds = [1, 2, 3]
    values = {("#1", s): v for s, v in zip(seeds, [0.50, 0.40, 0.46], strict=True)}
    values |= {("#2", s): v for s, v in zip(seeds, [0.30, 0.31, 0.29], strict=True)}
    values |= {(BASELINE_LABEL, s): v for s, v in zip(seeds, [0.45, 0.44, 0.45], strict=True)}
    outcome = summarise(plan_of(seeds, ["#1", "#2"]), values)
    assert outcome.winner is None
    assert [c.verdict for c in outcome.candidates] == ["within noise", "worse than the baseline"]
    assert outcome.summary() == (
        "no candidate beats the sparse-only baseline beyond noise: every 95% CI of the paired difference "
        "includes 0 or lies below it"
    )
    console = Console(file=io.StringIO(), width=200)
    print_confirmation(console, outcome)
    printed = console.file.getvalue()
    assert "no candidate beats the sparse-only baseline beyond noise" in printed
    assert "within noise" in printed and "worse than the baseline" in printed
    assert "confirmed:" not in printed


def test_one_seed_gives_no_interval_and_no_winner() -> None:
    outcome = summarise(plan_of([7], ["#1"]), {("#1", 7): 0.9, (BASELINE_LABEL, 7): 0.1})
    assert outcome.candidates[0].difference.lower is None
    assert outcome.winner is None
    assert "fewer than 2 paired seeds" in outcome.summary() and "search.confirm_seeds" in outcome.summary()


def test_pairs_use_only_seeds_both_finished_and_an_unfinished_phase_says_so() -> None:
    seeds = [1, 2, 3]
    values = {
        ("#1", 1): 0.6,
        ("#1", 2): 0.7,
        ("#1", 3): 0.65,
        (BASELINE_LABEL, 1): 0.5,
        (BASELINE_LABEL, 2): 0.55,
    }
    outcome = summarise(plan_of(seeds, ["#1"]), values)
    assert not outcome.complete and (outcome.finished, outcome.planned) == (5, 6)
    assert outcome.candidates[0].mean.n == 3
    assert outcome.candidates[0].difference.n == 2
    assert outcome.candidates[0].difference.mean == pytest.approx(0.125)
    assert outcome.summary().startswith("(only 5 of 6 re-runs finished) ")


# --------------------------------------------------------------------------------------------------
# the plan and the searcher, without Ray
# --------------------------------------------------------------------------------------------------


def small_config(**overrides: object) -> SweepConfig:
    return load_sweep_config(TINY_CONFIG).with_overrides(
        {"shaping.sources": SOURCES, "evaluation.heatmap_samples": 0, **overrides}
    )


def test_fresh_seeds_are_new_distinct_and_reproducible() -> None:
    config = small_config(**{"seed": 5, "ppo.seed": 6, "search.confirm_seeds": 50})
    seeds = fresh_seeds(config, 50)
    assert len(set(seeds)) == 50 and not {5, 6} & set(seeds)
    assert all(0 <= s < 2**31 for s in seeds)
    assert fresh_seeds(config, 50) == seeds
    assert fresh_seeds(config.with_overrides({"search.seed": 1}), 50) != seeds


def test_a_confirmation_without_the_sparse_source_is_refused() -> None:
    config = small_config(
        **{
            "shaping.sources": ["attention", "lime"],
            "search.confirm_top_k": 1,
            "search.points_to_evaluate": [],
        }
    )
    with pytest.raises(ConfigError, match="search.confirm_top_k: .*must include 'sparse'"):
        check_config(config)
    check_config(config.with_overrides({"search.confirm_top_k": 0}))


def row(trial_id: str, attention: float, value: float, epoch: int = 2) -> TrialRow:
    weights = {"sparse": 1.0 - attention, "attention": attention}
    return TrialRow(
        trial_id, "TERMINATED", weights, {}, epoch, value, value, f"/c/{trial_id}", val_reward_sem=0.01
    )


def test_plan_takes_the_top_k_distinct_points_by_gp_mean_and_shares_fresh_seeds() -> None:
    config = small_config(**{"search.confirm_top_k": 2, "search.confirm_seeds": 3})
    rows = [
        row("t0", 0.0, 0.10),  # the baseline itself: never a candidate
        row("t1", 0.2, 0.20),
        row("t2", 0.5, 0.50),
        row("t3", 0.8, 0.80),
        row("t4", 0.8, 0.79),  # the same point again: one candidate
        row("t5", 0.9, 0.99, epoch=1),  # stopped early: not ranked
    ]
    results = SweepResults("c", "/r", "sqlite:///x.db", "p", SOURCES, rows)
    plan = make_plan(config, results)

    assert [c.label for c in plan.candidates] == ["#1", "#2"]
    assert [c.trial_id for c in plan.candidates] == ["t3", "t2"]
    assert plan.candidates[0].posterior_mean > plan.candidates[1].posterior_mean
    assert plan.baseline.weights == {"sparse": 1.0, "attention": 0.0}
    assert plan.seeds == fresh_seeds(config, 3)
    assert len(plan.reruns) == 3 * 3
    for seed in plan.seeds:
        # Common random numbers: every point runs every seed.
        assert sorted(r.label for r in plan.reruns if r.seed == seed) == ["#1", "#2", BASELINE_LABEL]
    assert all(r.config["seed"] == r.seed for r in plan.reruns)
    assert plan.locate(json.loads(json.dumps(plan.reruns[4].config))) == plan.reruns[4]
    assert plan.locate({**plan.reruns[0].config, "seed": -1}) is None


def test_plan_says_when_fewer_candidates_than_asked(tmp_path: Path) -> None:
    config = small_config(**{"search.confirm_top_k": 3})
    results = SweepResults(
        "c", "/r", "sqlite:///x.db", "p", SOURCES, [row("t0", 0.0, 0.1), row("t1", 0.5, 0.3)]
    )
    plan = make_plan(config, results)
    assert [c.trial_id for c in plan.candidates] == ["t1"]
    assert "fewer than search.confirm_top_k = 3" in plan.note
    plan.save(tmp_path / PLAN_FILE)
    assert ConfirmationPlan.load(tmp_path / PLAN_FILE) == plan


def test_fixed_list_searcher_hands_out_its_list_once_and_resumes_from_json(tmp_path: Path) -> None:
    configs = [{"weights": {"sparse": 1.0}, "seed": s} for s in (1, 2, 3)]
    searcher = FixedListSearcher(configs)
    assert searcher.set_search_properties("val_reward", "max", {})
    assert searcher.suggest("a") == configs[0]
    assert searcher.suggest("b") == configs[1]
    assert searcher.suggest("a") == configs[0]  # a trial asked about again keeps its config
    searcher.save(str(tmp_path / "state.json"))

    restored = FixedListSearcher([])
    restored.restore(str(tmp_path / "state.json"))
    assert restored.suggest("b") == configs[1]
    assert restored.suggest("c") == configs[2]
    assert restored.suggest("d") == Searcher.FINISHED


# --------------------------------------------------------------------------------------------------
# on a real local Ray
# --------------------------------------------------------------------------------------------------


def confirm_overrides(name: str) -> dict[str, object]:
    """Two search trials (the sparse start point and one more), then one candidate and the baseline at 2 seeds."""
    return {
        "name": name,
        "shaping.sources": SOURCES,
        "evaluation.heatmap_samples": 0,
        "search.trials": 2,
        "search.confirm_top_k": 1,
        "search.confirm_seeds": 2,
    }


def runs_by_kind(client: MlflowClient, experiment_id: str) -> dict[str, list]:
    kinds: dict[str, list] = {}
    for run in client.search_runs([experiment_id], run_view_type=ViewType.ALL):
        kinds.setdefault(run.data.tags.get(tracking.TAG_KIND, "?"), []).append(run)
    return kinds


def confirm_trials(manifest: SweepManifest) -> list:
    analysis = ExperimentAnalysis(experiment_path(manifest), default_metric="val_reward", default_mode="max")
    return analysis.trials


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_confirmation_reruns_top_k_and_baseline_with_fresh_seeds(
    ray_local: None,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = small_config(**confirm_overrides("confirm"))
    run_dir = tmp_path / "confirm"
    outcome = run_sweep(config, run_dir=run_dir)
    manifest, results, confirmation = outcome.manifest, outcome.results, outcome.confirmation

    # The plan: the best non-baseline point by GP mean, the baseline, 2 seeds the search never used.
    plan = ConfirmationPlan.load(run_dir / PLAN_FILE)
    search_point = next(r for r in results.trials if r.weights["sparse"] < 1.0)
    assert [c.trial_id for c in plan.candidates] == [search_point.trial_id]
    assert len(plan.seeds) == 2 and not set(plan.seeds) & {config.seed, config.ppo.seed}

    # Ray ran each point at each seed, every epoch, and each run used its seed.
    trials = confirm_trials(manifest)
    assert len(trials) == 4
    assert all(t.status == "TERMINATED" and t.last_result["epoch"] == 2 for t in trials)
    assert sorted((plan.locate(t.config).label, plan.locate(t.config).seed) for t in trials) == sorted(
        (label, seed) for label in ("#1", BASELINE_LABEL) for seed in plan.seeds
    )
    for trial in trials:
        checkpoint = trial.checkpoint.path
        assert read_run_state(checkpoint)["seed"] == trial.config["seed"]
    assert confirmation is not None and confirmation.complete and confirmation.finished == 4
    assert set(confirmation.candidates[0].values) == set(plan.seeds)
    assert confirmation.candidates[0].difference.n == 2

    # MLflow: one run per search trial and per re-run, the re-runs nested in one confirmation run.
    client = MlflowClient(tracking_uri=manifest.tracking_uri)
    kinds = runs_by_kind(client, manifest.experiment_id)
    assert {k: len(v) for k, v in kinds.items()} == {"sweep": 1, "trial": 6, "confirmation": 1}
    confirm_run = kinds["confirmation"][0]
    assert confirm_run.info.status == "FINISHED"
    assert confirm_run.data.tags["summary"] == confirmation.summary()
    reruns = tracking.child_runs(client, manifest.experiment_id, confirm_run.info.run_id)
    assert sorted(r.data.tags[tracking.TAG_TRIAL_ID] for r in reruns) == sorted(t.trial_id for t in trials)
    for rerun in reruns:
        assert rerun.info.status == "FINISHED"
        assert rerun.data.tags[tracking.TAG_PHASE] == tracking.CONFIRMATION
        assert rerun.data.tags["candidate"] in ("#1", BASELINE_LABEL)
        assert rerun.data.params["seed"] == rerun.data.tags["seed"]
        assert int(rerun.data.tags["seed"]) in plan.seeds
        assert sorted(m.step for m in client.get_metric_history(rerun.info.run_id, "val_reward")) == [1, 2]
    searched = tracking.child_runs(client, manifest.experiment_id, manifest.parent_run_id)
    assert sorted(r.data.tags[tracking.TAG_TRIAL_ID] for r in searched) == sorted(
        r.trial_id for r in results.trials
    )

    # `results` shows it, as text and as JSON.
    assert main(["results", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "confirmation: 2 fresh seeds" in printed
    assert f"confirmation: {confirmation.summary()}" in printed
    assert main(["results", str(run_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["confirmation"]["summary"] == confirmation.summary()
    assert data["confirmation"]["seeds"] == plan.seeds

    # Resuming a finished sweep reruns nothing and logs no new run.
    again = run_sweep(config, run_dir=run_dir, resume=True)
    assert again.confirmation.to_dict() == confirmation.to_dict()
    assert sorted(t.trial_id for t in confirm_trials(manifest)) == sorted(t.trial_id for t in trials)
    assert {k: len(v) for k, v in runs_by_kind(client, manifest.experiment_id).items()} == {
        "sweep": 1,
        "trial": 6,
        "confirmation": 1,
    }


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_driver_killed_during_confirmation_resumes_it(tmp_path: Path) -> None:
    data = yaml.safe_load(TINY_CONFIG.read_text())
    for dotted, value in {**confirm_overrides("crash"), "search.max_concurrent": 1}.items():
        section, _, key = dotted.rpartition(".")
        (data.setdefault(section, {}) if section else data)[key] = value
    config_path = tmp_path / "crash.yaml"
    config_path.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "crash"
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen(
        cli("sweep", str(config_path), "--run-dir", str(run_dir)),
        stdout=log,
        stderr=subprocess.STDOUT,
        # Ray records its experiment at every step here, so the re-run in flight at the kill is in its
        # record; what happens when the record lags is tests/integration/test_trial_resume.py's subject.
        env=driver_env(TUNE_GLOBAL_CHECKPOINT_S="0"),
        start_new_session=True,
    )
    try:
        # One re-run at a time: the kill comes when the second re-run has saved its first epoch.
        deadline = time.monotonic() + 700
        while len(complete_checkpoints(run_dir / "confirm", "checkpoint_000000")) < 2:
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no second re-run checkpoint in time"
            time.sleep(0.05)
    finally:
        kill_session(driver.pid)
        driver.wait()
        log.close()

    manifest = read_manifest(run_dir)
    plan = ConfirmationPlan.load(run_dir / PLAN_FILE)
    client = MlflowClient(tracking_uri=manifest.tracking_uri)
    confirm_run = runs_by_kind(client, manifest.experiment_id)["confirmation"][0]
    before = {
        r.data.tags[tracking.TAG_TRIAL_ID]: r
        for r in tracking.child_runs(client, manifest.experiment_id, confirm_run.info.run_id)
    }
    finished_before = {trial_id for trial_id, r in before.items() if r.info.status == "FINISHED"}
    assert len(before) == 2 and len(finished_before) == 1
    in_flight = (set(before) - finished_before).pop()

    resumed = resume_sweep(run_dir, timeout=700)
    assert "confirmation: " in resumed.stdout

    # The plan was kept; every re-run ran every epoch, once.
    assert ConfirmationPlan.load(run_dir / PLAN_FILE) == plan
    trials = {t.trial_id: t for t in confirm_trials(manifest)}
    assert len(trials) == 4 and all(
        t.status == "TERMINATED" and t.last_result["epoch"] == 2 for t in trials.values()
    )
    assert sorted(plan.locate(t.config).seed for t in trials.values()) == sorted(plan.seeds * 2)
    # The unfinished re-run continued from its epoch-1 checkpoint; the others started from scratch.
    assert trials[in_flight].last_result["resumed_from_epoch"] == 1
    assert all(t.last_result["resumed_from_epoch"] == 0 for i, t in trials.items() if i != in_flight)
    outcome = load_confirmation(manifest)
    assert outcome.complete and outcome.finished == 4

    # No duplicate MLflow run: one confirmation run, one run per re-run, the finished one untouched.
    kinds = runs_by_kind(client, manifest.experiment_id)
    assert {k: len(v) for k, v in kinds.items()} == {"sweep": 1, "trial": 6, "confirmation": 1}
    assert kinds["confirmation"][0].info.run_id == confirm_run.info.run_id
    reruns = tracking.child_runs(client, manifest.experiment_id, confirm_run.info.run_id)
    assert sorted(r.data.tags[tracking.TAG_TRIAL_ID] for r in reruns) == sorted(trials)
    for rerun in reruns:
        assert rerun.info.status == "FINISHED"
        assert sorted(m.step for m in client.get_metric_history(rerun.info.run_id, "val_reward")) == [1, 2]
        trial_id = rerun.data.tags[tracking.TAG_TRIAL_ID]
        if trial_id in finished_before:
            assert rerun.info.end_time == before[trial_id].info.end_time
