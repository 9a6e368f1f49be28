"""`dense-reward final RUN --steps N [--best-observed] [--out DIR] [--merge-lora] [--register-as NAME]`."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run dir, or the name of a sweep under ./runs")
    parser.add_argument("--steps", type=int, required=True, help="PPO steps on the full training set")
    parser.add_argument(
        "--best-observed",
        action="store_true",
        help="train the trial with the highest observed val_reward instead of the recommended "
        "(or confirmed) one",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="Hugging Face folder to write, new or empty (default: <run dir>/final/<MLflow run id>)",
    )
    parser.add_argument(
        "--merge-lora", action="store_true", help="merge LoRA adapters into the saved weights"
    )
    parser.add_argument(
        "--register-as",
        help="MLflow registry name (default: tracking.register_model, else the run name)",
    )


def run(args: argparse.Namespace) -> int:
    from tune_jobs.console import console, knobs_text, value_text, weights_text
    from tune_jobs.final import run_final

    out = console()
    outcome = run_final(
        args.run,
        args.steps,
        out=args.out,
        merge_lora=args.merge_lora,
        register_as=args.register_as,
        best_observed=args.best_observed,
        progress=lambda line: out.print(line, markup=False, highlight=False),
    )
    trial = outcome.trial
    out.print(
        f"trained the {outcome.choice} trial {trial.trial_id} ({weights_text(trial.weights)})"
        f"{knobs_text(trial.knobs)} for {args.steps} steps",
        markup=False,
    )
    out.print(f"why: {outcome.reason}", markup=False)
    out.print(
        f"val_reward: {outcome.val_reward:.4f} (that trial's best in the sweep: {value_text(trial.best_val_reward)})"
    )
    out.print(f"model: {outcome.model_dir}", markup=False)
    out.print(
        f"registered: {outcome.registered_name} version {outcome.version} (MLflow run {outcome.run_id})",
        markup=False,
    )
    return 0
