"""`final`: which trial it trains (recommended, confirmed, best observed) and why; every call its own
MLflow run, folder and registered model version pointing at that run's own model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.support.paths import TINY_CONFIG
from tests.support.ray_fixtures import ray_local  # noqa: F401
from tune_jobs import tracking
from tune_jobs.cli import main
from tune_jobs.config import load_sweep_config
from tune_jobs.confirm import BASELINE_LABEL, Candidate, Confirmation, ConfirmationPlan, Rerun, summarise
from tune_jobs.final import FINAL_DIR, choose_trial
from tune_jobs.results import Recommended, SweepResults, TrialRow
from tune_jobs.sweep import SweepOutcome, run_sweep

# --------------------------------------------------------------------------------------------------
# the choice, without Ray
# --------------------------------------------------------------------------------------------------


def results_of() -> SweepResults:
    """Trial b is the luckiest; the GP recommends a; c was also tried."""
    rows = [
        TrialRow("a", "TERMINATED", {"sparse": 0.2, "attention": 0.8}, {}, 2, 0.50, 0.52, "/ca"),
        TrialRow("b", "TERMINATED", {"sparse": 0.7, "attention": 0.3}, {}, 2, 0.45, 0.60, "/cb"),
        TrialRow("c", "TERMINATED", {"sparse": 0.5, "attention": 0.5}, {}, 2, 0.48, 0.49, "/cc"),
    ]
    recommended = Recommended("a", {"weights": rows[0].weights}, 0.51, 0.47, 0.55)
    return SweepResults("s", "/r", "sqlite:///x.db", "p", ["sparse", "attention"], rows, recommended)


def confirmation_of(values: dict[tuple[str, int], float], seeds: list[int]) -> Confirmation:
    """Candidates #1 = trial c, #2 = trial a, and the baseline, at `seeds`."""
    candidates = [
        Candidate("#1", {"weights": {"sparse": 0.5, "attention": 0.5}}, "c", 0.5),
        Candidate("#2", {"weights": {"sparse": 0.2, "attention": 0.8}}, "a", 0.49),
    ]
    baseline = Candidate(BASELINE_LABEL, {"weights": {"sparse": 1.0, "attention": 0.0}})
    reruns = [Rerun(p.label, s, {**p.config, "seed": s}) for s in seeds for p in [*candidates, baseline]]
    return summarise(ConfirmationPlan(seeds, candidates, baseline, reruns), values)


def test_final_trains_the_recommended_trial_by_default_and_the_best_observed_on_request() -> None:
    results = results_of()
    chosen = choose_trial(results, None)
    assert (chosen.row.trial_id, chosen.choice) == ("a", "recommended")
    assert "GP posterior-mean maximiser" in chosen.reason and "0.5100 [0.4700, 0.5500]" in chosen.reason
    chosen = choose_trial(results, None, best_observed=True)
    assert (chosen.row.trial_id, chosen.choice) == ("b", "best observed")
    assert "--best-observed" in chosen.reason


def test_final_prefers_a_candidate_confirmed_beyond_noise() -> None:
    seeds = [1, 2, 3]
    values = {("#1", s): v for s, v in zip(seeds, [0.520, 0.621, 0.559], strict=True)}
    values |= {("#2", s): v for s, v in zip(seeds, [0.50, 0.60, 0.57], strict=True)}
    values |= {(BASELINE_LABEL, s): v for s, v in zip(seeds, [0.50, 0.60, 0.54], strict=True)}
    chosen = choose_trial(results_of(), confirmation_of(values, seeds))
    assert (chosen.row.trial_id, chosen.choice) == ("c", "confirmed")
    assert "candidate #1 beats the sparse-only baseline beyond noise" in chosen.reason


def test_final_says_when_no_candidate_beat_the_baseline() -> None:
    seeds = [1, 2, 3]
    values = {
        (label, s): 0.5 + 0.01 * ((s * (i + 2)) % 3)
        for i, label in enumerate(["#1", "#2", BASELINE_LABEL])
        for s in seeds
    }
    chosen = choose_trial(results_of(), confirmation_of(values, seeds))
    assert (chosen.row.trial_id, chosen.choice) == ("a", "recommended")
    assert "confirmation: no candidate beats the sparse-only baseline beyond noise" in chosen.reason


def test_final_does_not_trust_an_unfinished_confirmation() -> None:
    seeds = [1, 2, 3]
    values = {("#1", s): 0.9 + 0.01 * s for s in seeds} | {(BASELINE_LABEL, s): 0.1 for s in seeds}
    confirmation = confirmation_of(values, seeds)
    assert confirmation.winner is not None and not confirmation.complete
    chosen = choose_trial(results_of(), confirmation)
    assert (chosen.row.trial_id, chosen.choice) == ("a", "recommended")
    assert "resume the sweep to finish it" in chosen.reason


def test_without_a_recommendation_final_takes_the_best_observed_and_says_why() -> None:
    results = results_of()
    results.recommended = None
    chosen = choose_trial(results, None)
    assert (chosen.row.trial_id, chosen.choice) == ("b", "best observed")
    assert "no recommendation" in chosen.reason


# --------------------------------------------------------------------------------------------------
# on a real sweep: two `final` runs, two model versions
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> SweepOutcome:  # noqa: F811
    config = load_sweep_config(TINY_CONFIG).with_overrides(
        {
            "name": "registry",
            "shaping.sources": ["sparse", "attention"],
            "evaluation.heatmap_samples": 0,
            "search.trials": 2,
        }
    )
    return run_sweep(config, run_dir=tmp_path_factory.mktemp("runs") / "registry")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_each_final_is_its_own_run_folder_and_model_version(
    sweep: SweepOutcome, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_dir = Path(sweep.manifest.run_dir)
    client = MlflowClient(tracking_uri=sweep.manifest.tracking_uri)
    for steps in (1, 2):
        assert main(["final", str(run_dir), "--steps", str(steps)]) == 0
    printed = capsys.readouterr().out
    recommended = sweep.results.recommended.trial_id
    assert printed.count(f"trained the recommended trial {recommended}") == 2
    assert "why: " in printed
    # Progress while it works: a line per PPO step with the time left, then evaluation and saving.
    progress = [line for line in printed.splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in progress] == ["step 1/1", "step 1/2", "step 2/2"]
    assert all("train_reward " in line and " s/step, about " in line for line in progress)
    assert printed.count("evaluating on ") == 2 and printed.count("saving the model to ") == 2

    finals = tracking.child_runs(
        client, sweep.manifest.experiment_id, sweep.manifest.parent_run_id, kind="final"
    )
    assert len(finals) == 2 and finals[0].info.run_id != finals[1].info.run_id
    versions = sorted(client.search_model_versions("name='registry'"), key=lambda v: int(v.version))
    assert [str(v.version) for v in versions] == ["1", "2"]
    assert [v.run_id for v in versions] == [f.info.run_id for f in finals]
    assert versions[0].source != versions[1].source
    for version, steps in zip(versions, (1, 2), strict=True):
        run = client.get_run(version.run_id)
        assert run.info.status == "FINISHED"
        assert version.source == f"{run.info.artifact_uri}/model"
        assert run.data.tags[tracking.TAG_REGISTERED_MODEL] == f"registry/{version.version}"
        folder = run_dir / FINAL_DIR / run.info.run_id
        local = json.loads((folder / "dense_reward.json").read_text())
        assert (local["mlflow_run_id"], local["steps"], local["choice"]) == (
            run.info.run_id,
            steps,
            "recommended",
        )
        # The version's files are this run's model, byte for byte.
        fetched = Path(
            client.download_artifacts(version.run_id, "model", str(tmp_path / f"v{version.version}"))
        )
        assert json.loads((fetched / "dense_reward.json").read_text()) == local
        assert digest(fetched / "model.safetensors") == digest(folder / "model.safetensors")
    first, second = (run_dir / FINAL_DIR / v.run_id / "model.safetensors" for v in versions)
    assert digest(first) != digest(second)

    # A folder that holds files is never written over; nothing is logged then.
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("x")
    assert main(["final", str(run_dir), "--steps", "1", "--out", str(taken)]) == 2
    assert "--out:" in capsys.readouterr().err
    assert len(client.search_runs([sweep.manifest.experiment_id])) == 1 + 2 + 2
