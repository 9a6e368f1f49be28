"""`dense-reward demo`: build the offline demo kit (first run only), run the demo sweep, compare.

The sweep is `tune_jobs/configs/demo.yaml`: a BO search over the weights of five sources on
SmolLM2-135M-Instruct with a MiniLM reward model trained to agree with VADER. Its first points are
sparse-only and ABC, so the table always holds the two baselines next to what BO found.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dense_reward.errors import UserError

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG, help="sweep config (default: demo.yaml)")
    parser.add_argument("--trials", type=int, help="number of trials (overrides search.trials)")
    parser.add_argument("--name", help="run name (default: demo); the run dir is ./runs/<name>")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted demo sweep")
    parser.add_argument("--kit-only", action="store_true", help="build the kit and stop")


def _compare(results, console) -> None:
    """Print the best trial against the sparse-only trial on val_reward and gold_reward."""
    sparse = next((row for row in results.trials if row.weights.get("sparse", 0.0) > 1 - 1e-9), None)
    best = results.best
    if best is None or sparse is None:
        return
    console.print("\nbest vs sparse-only (last epoch, validation prompts):")
    for label, row in (("best", best), ("sparse-only", sparse)):
        gold = row.metrics.get("gold_reward")
        gold_text = f"{gold:.4f}" if gold is not None else "n/a"
        val = f"{row.val_reward:.4f}" if row.val_reward is not None else "n/a"
        console.print(f"  {label:<12} {row.trial_id}: val_reward={val}  gold_reward={gold_text}")


def run(args: argparse.Namespace) -> int:
    from dense_reward.config import load_config
    from dense_reward.demo.kit import build_kit
    from tune_jobs.commands import sweep as sweep_command
    from tune_jobs.results import console as make_console
    from tune_jobs.results import load_results
    from tune_jobs.sweep import default_run_dir, resolve_run

    console = make_console()
    if not args.config.is_file():
        raise UserError(f"demo config not found: {args.config}")
    started = time.perf_counter()
    console.print("[bold]1/2 demo kit[/bold] (SmolLM2-135M-Instruct policy, MiniLM reward model, VADER gold)")
    build_kit(progress=lambda line: console.print(f"  {line}"))
    console.print(f"  kit ready in {time.perf_counter() - started:.0f} s")
    if args.kit_only:
        return 0

    console.print("[bold]2/2 BO sweep[/bold] over the weights of sparse, attention, redistribution, shap, lime")
    sweep_args = argparse.Namespace(
        config=str(args.config),
        name=args.name,
        run_dir=None,
        address=None,
        trials=args.trials,
        max_concurrent=None,
        resume=args.resume,
    )
    status = sweep_command.run(sweep_args)
    config = load_config(args.config)
    if args.name:
        config = config.with_overrides({"name": args.name})
    manifest = resolve_run(default_run_dir(config))
    _compare(load_results(manifest), console)
    console.print(f"\nplots: {Path(manifest.run_dir) / 'plots'}  results: {Path(manifest.run_dir) / 'results.csv'}")
    console.print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return status
