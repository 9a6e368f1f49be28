"""Final training: resume a trial's best checkpoint with its weights and train on for N steps.

Which trial (:func:`choose_trial`): the sweep's *recommended* one by default (the GP posterior-mean
maximiser among evaluated points, see `tune_jobs.results`); when the confirmation phase ran to the end
and a candidate beat the sparse-only baseline beyond noise, that confirmed candidate instead (from the
checkpoint of its search trial); the best observed trial with ``best_observed``. The choice and its
reason are logged and returned.

The policy continues from the checkpoint (weights, optimizer moments, RNG) with a fresh learning-rate
schedule over the new steps, on batches drawn from the whole training split. Every call is its own
`final` child run of the sweep's MLflow run, writes its own folder (default
``<run dir>/final/<MLflow run id>``) and registers its own model version, whose source is that run's
artifacts (so version N always holds the model of run N).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ray.tune import Checkpoint

from dense_reward.errors import UserError
from dense_reward.run import RUN_STATE_FILE, Run
from tune_jobs import tracking
from tune_jobs.confirm import Confirmation, load_confirmation
from tune_jobs.console import interval_text, value_text
from tune_jobs.results import SweepResults, TrialRow, load_results
from tune_jobs.rundir import SweepManifest, resolve_run
from tune_jobs.trainable import trial_arguments

FINAL_KEY = "final"
FINAL_DIR = "final"
"""Final models live in ``<run dir>/final/<MLflow run id>`` unless ``--out`` says otherwise."""
Choice = Literal["recommended", "confirmed", "best observed"]


@dataclass
class ChosenTrial:
    """The trial `final` trains on, and why."""

    row: TrialRow
    choice: Choice
    reason: str


@dataclass
class FinalOutcome:
    """What `run_final` returns."""

    model_dir: Path
    run_id: str
    registered_name: str
    version: str
    val_reward: float
    trial: TrialRow
    choice: Choice
    reason: str


def choose_trial(
    results: SweepResults, confirmation: Confirmation | None, best_observed: bool = False
) -> ChosenTrial:
    """The trial to train: best observed when asked; else the confirmed winner of a finished confirmation
    phase; else the recommended trial; else (no trial ran every epoch) the best observed one.

    Raises `UserError` when no trial has a val_reward yet.
    """
    best = results.best
    if best is None:
        raise UserError(
            f"sweep {results.name!r} has no trial with a val_reward yet; run or resume the sweep first"
        )
    if best_observed:
        return ChosenTrial(
            best,
            "best observed",
            f"--best-observed: the highest val_reward of any trial and epoch, {value_text(best.best_val_reward)}",
        )
    rows = {row.trial_id: row for row in results.trials}
    confirmed = ""
    if confirmation is not None and confirmation.candidates:
        winner = confirmation.winner if confirmation.complete else None
        if winner is not None and winner.trial_id in rows:
            return ChosenTrial(rows[winner.trial_id], "confirmed", f"confirmation: {confirmation.summary()}")
        confirmed = f"; confirmation: {confirmation.summary()}"
        if not confirmation.complete:
            confirmed += " (resume the sweep to finish it)"
    recommended, row = results.recommended, results.recommended_trial
    if recommended is None or row is None:
        return ChosenTrial(
            best, "best observed", "no trial ran every epoch, so there is no recommendation" + confirmed
        )
    reason = (
        f"the GP posterior-mean maximiser among evaluated points, val_reward {interval_text(recommended)}"
    )
    if recommended.fallback:
        reason = f"the best observed trial stands in for the GP ({recommended.reason})"
    return ChosenTrial(row, "recommended", reason + confirmed)


def check_checkpoint(manifest: SweepManifest, chosen: ChosenTrial) -> str:
    """The chosen trial's best checkpoint; `UserError` when it has none, or a local one is missing or incomplete."""
    path = chosen.row.best_checkpoint
    if not path:
        raise UserError(
            f"sweep {manifest.name!r}: {chosen.choice} trial {chosen.row.trial_id} has no checkpoint"
        )
    if "://" not in path and not (Path(path) / RUN_STATE_FILE).is_file():
        raise UserError(
            f"sweep {manifest.name!r}: the checkpoint of {chosen.choice} trial {chosen.row.trial_id} is missing "
            f"or incomplete at {path}"
        )
    return path


def check_out(out: Path) -> None:
    """Refuse an output folder that already holds files: a model is never written over another."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out: {out} already exists and is not an empty folder; pick a new folder")


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


def step_line(step: int, steps: int, metrics: dict[str, float], elapsed: float) -> str:
    """``step 3/50: train_reward 0.4123  kl 0.0210  20.0 s/step, about 15 min 40 s left``."""
    per_step = elapsed / step
    left = round(per_step * (steps - step))
    remaining = f"{left // 60} min {left % 60} s" if left >= 60 else f"{left} s"
    return (
        f"step {step}/{steps}: train_reward {metrics.get('train_reward', float('nan')):.4f}  "
        f"kl {metrics.get('kl', float('nan')):.4f}  {per_step:.1f} s/step, about {remaining} left"
    )


def run_final(
    run: str | Path,
    steps: int,
    out: Path | None = None,
    merge_lora: bool = False,
    register_as: str | None = None,
    best_observed: bool = False,
    progress: Callable[[str], None] | None = None,
) -> FinalOutcome:
    """Train the chosen trial of sweep `run` (see `choose_trial`) for `steps` more PPO steps; save, log, register.

    Args:
        run: the run dir, or the name of a sweep under ``./runs``.
        steps: PPO steps on the whole training split.
        out: the Hugging Face folder to write (new or empty); None = ``<run dir>/final/<MLflow run id>``.
        merge_lora: merge LoRA adapters into the saved weights.
        register_as: the registered model's name; None = ``tracking.register_model``, else the sweep name.
        best_observed: train the best observed trial instead of the recommended (or confirmed) one.
        progress: called with a line of text as the work goes on (each PPO step, evaluation, saving).
    """
    say = progress or (lambda line: None)
    if steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    if out is not None:
        check_out(out)
    manifest = resolve_run(run)
    tracking.connect(manifest.tracking_uri)
    chosen = choose_trial(load_results(manifest), load_confirmation(manifest), best_observed)
    checkpoint = check_checkpoint(manifest, chosen)
    sweep = manifest.load_config()
    row = chosen.row
    config, weights, seed = trial_arguments(sweep.library_config(), row.trial_config)
    name = register_as or sweep.tracking.register_model or sweep.name

    trainer_run = Run(config, weights, seed=seed)
    # A checkpoint on cloud storage is fetched to a local folder first; a local one is used in place.
    with Checkpoint(checkpoint).as_directory() as directory:
        trainer_run.load(directory)
    # The trial's schedule is spent: a fresh one over the new steps.
    trainer_run.trainer.reset_schedule(steps)

    tracker = tracking.TrialTracker(
        manifest.tracking_target, FINAL_KEY, f"final {row.trial_id}", kind=FINAL_KEY, new_run=True
    )
    out = out or Path(manifest.run_dir) / FINAL_DIR / tracker.run_id
    try:
        tracker.log_start(
            {**row.trial_config, "source_trial": row.trial_id, "steps": steps, "choice": chosen.choice}
        )
        tracker.set_tags({tracking.TAG_CHECKPOINT: checkpoint, "choice_reason": chosen.reason})
        say(f"training the {chosen.choice} trial {row.trial_id} for {steps} PPO steps (MLflow run {tracker.run_id})")
        started = time.monotonic()
        for step, metrics in enumerate(trainer_run.train_steps(steps), start=1):
            tracker.log_metrics(metrics, step=step, prefix="train/")
            say(step_line(step, steps, metrics, time.monotonic() - started))
        say(f"evaluating on {len(trainer_run.validation_prompts)} validation prompts")
        evaluation = trainer_run.evaluate()
        val_reward = float(evaluation["val_reward"])
        final_metrics = {
            "val_reward": val_reward,
            "val_reward_sem": evaluation.get("val_reward_sem"),
            "sweep_best_val_reward": row.best_val_reward,
            "gold_reward": evaluation.get("gold_reward"),
        }
        tracker.log_metrics(final_metrics, step=steps)
        extra = {
            "sweep": manifest.name,
            "source_trial": row.trial_id,
            "choice": chosen.choice,
            "reason": chosen.reason,
            "weights": row.weights,
            "knobs": row.knobs,
            "steps": steps,
            "val_reward": val_reward,
            "mlflow_run_id": tracker.run_id,
        }
        say(f"val_reward {val_reward:.4f}; saving the model to {out} and registering it as {name!r}")
        save_hf_folder(trainer_run, out, merge_lora, extra)
        tracker.log_artifacts(out, "model")
        version = tracker.register_model(name, "model")
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish("FINISHED")
    return FinalOutcome(
        model_dir=out,
        run_id=tracker.run_id,
        registered_name=name,
        version=version,
        val_reward=val_reward,
        trial=row,
        choice=chosen.choice,
        reason=chosen.reason,
    )
