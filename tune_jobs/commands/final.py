"""`dense-reward final RUN --steps N [--out DIR] [--merge-lora] [--register-as NAME]`."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run dir, or the name of a sweep under ./runs")
    parser.add_argument("--steps", type=int, required=True, help="PPO steps on the full training set")
    parser.add_argument("--out", type=Path, help="Hugging Face folder to write (default: <run dir>/final_model)")
    parser.add_argument("--merge-lora", action="store_true", help="merge LoRA adapters into the saved weights")
    parser.add_argument("--register-as", help="MLflow registry name (default: tracking.register_model, else the run name)")


def run(args: argparse.Namespace) -> int:
    from tune_jobs.final import run_final

    outcome = run_final(args.run, args.steps, out=args.out, merge_lora=args.merge_lora, register_as=args.register_as)
    weights = ", ".join(f"{s}={w:.3f}" for s, w in outcome.trial.weights.items())
    print(f"trained best trial {outcome.trial.trial_id} ({weights}) for {args.steps} steps")
    print(f"val_reward: {outcome.val_reward:.4f} (sweep best {outcome.trial.best_val_reward:.4f})")
    print(f"model: {outcome.model_dir}")
    print(f"registered: {outcome.registered_name} version {outcome.version} (MLflow run {outcome.run_id})")
    return 0
