"""Final training: resume a trial's best checkpoint with its weights and train on for N steps.

The trial is the sweep's recommended one by default (see `tune_jobs.results`), or the best observed.

The policy continues from the checkpoint (weights, optimizer moments, RNG) with a fresh learning-rate
schedule over the new steps, on batches drawn from the whole training split. The run is logged as
the `final` child of the sweep's MLflow run; the policy is saved as a Hugging Face folder
(safetensors; LoRA adapters merged when asked) and registered in the MLflow model registry, from the
run's artifacts (`client.create_model_version`, which works offline with a sqlite store).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric
from ray.tune import Checkpoint

from dense_reward.errors import UserError
from dense_reward.run import RUN_STATE_FILE, Run
from tune_jobs import tracking
from tune_jobs.results import TrialRow, load_results
from tune_jobs.rundir import SweepManifest, resolve_run
from tune_jobs.trainable import trial_arguments

FINAL_KEY = "final"


@dataclass
class FinalOutcome:
    """What `run_final` returns."""

    model_dir: Path
    run_id: str
    registered_name: str
    version: str
    val_reward: float
    trial: TrialRow


def best_trial(manifest: SweepManifest) -> TrialRow:
    """The sweep's best trial; `UserError` when no trial has a checkpoint on disk."""
    results = load_results(manifest)
    best = results.best
    if best is None:
        raise UserError(f"sweep {manifest.name!r} has no trial with a val_reward yet; run or resume the sweep first")
    if not best.best_checkpoint:
        raise UserError(f"sweep {manifest.name!r}: best trial {best.trial_id} has no checkpoint")
    if "://" not in best.best_checkpoint and not (Path(best.best_checkpoint) / RUN_STATE_FILE).is_file():
        raise UserError(
            f"sweep {manifest.name!r}: the checkpoint of best trial {best.trial_id} is missing or incomplete "
            f"at {best.best_checkpoint}"
        )
    return best


def save_hf_folder(run: Run, out: Path, merge_lora: bool, extra: dict[str, Any]) -> Path:
    """Write the policy and its tokenizer as a Hugging Face folder (safetensors) plus `dense_reward.json`."""
    policy = run.trainer.policy
    if hasattr(policy, "merge_and_unload") and merge_lora:
        policy = policy.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(out, safe_serialization=True)
    run.trainer.tokenizer.save_pretrained(out)
    (out / "dense_reward.json").write_text(json.dumps(extra, indent=2))
    return out


def register(client: Any, name: str, run_id: str, source: str) -> str:
    """A new version of registered model `name` from `source`; returns the version number."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, tags={tracking.TAG_KIND: FINAL_KEY})
    version = client.create_model_version(name, source=source, run_id=run_id)
    return str(version.version)


def run_final(
    run: str | Path,
    steps: int,
    out: Path | None = None,
    merge_lora: bool = False,
    register_as: str | None = None,
) -> FinalOutcome:
    """Train the best trial of sweep `run` for `steps` more PPO steps; save, log and register the policy."""
    if steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    manifest = resolve_run(run)
    client = tracking.connect(manifest.tracking_uri)
    best = best_trial(manifest)
    sweep = manifest.load_config()
    config, weights, seed = trial_arguments(sweep.library_config(), best.trial_config)
    out = out or Path(manifest.run_dir) / "final_model"
    name = register_as or sweep.tracking.register_model or sweep.name

    trainer_run = Run(config, weights, seed=seed)
    # A checkpoint on cloud storage is fetched to a local folder first; a local one is used in place.
    with Checkpoint(best.best_checkpoint).as_directory() as directory:
        trainer_run.load(directory)
    # The trial's schedule is spent: a fresh one over the new steps.
    trainer_run.trainer.reset_schedule(steps)

    tracker = tracking.TrialTracker(manifest.tracking_target, FINAL_KEY, FINAL_KEY, kind=FINAL_KEY)
    tracker.log_start({**best.trial_config, "source_trial": best.trial_id, "steps": steps})
    tracking.log_tags(client, tracker.run_id, {tracking.TAG_CHECKPOINT: best.best_checkpoint})
    try:
        for step, metrics in enumerate(trainer_run.train_steps(steps), start=1):
            client.log_batch(
                tracker.run_id,
                metrics=[
                    Metric(f"train/{k}", v, 0, step)
                    for k, v in tracking.finite_metrics(metrics).items()
                ],
            )
        evaluation = trainer_run.evaluate()
        val_reward = float(evaluation["val_reward"])
        final_metrics = {"val_reward": val_reward, "sweep_best_val_reward": best.best_val_reward}
        if evaluation.get("gold_reward") is not None:
            final_metrics["gold_reward"] = float(evaluation["gold_reward"])
        tracker.log_epoch(1, final_metrics)
        extra = {
            "sweep": manifest.name,
            "source_trial": best.trial_id,
            "weights": best.weights,
            "knobs": best.knobs,
            "steps": steps,
            "val_reward": val_reward,
        }
        save_hf_folder(trainer_run, out, merge_lora, extra)
        tracker.log_artifacts(out, "model")
        source = f"{client.get_run(tracker.run_id).info.artifact_uri}/model"
        version = register(client, name, tracker.run_id, source)
        tracking.log_tags(client, tracker.run_id, {"registered_model": f"{name}/{version}"})
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish("FINISHED")
    return FinalOutcome(
        model_dir=out, run_id=tracker.run_id, registered_name=name, version=version, val_reward=val_reward, trial=best
    )
