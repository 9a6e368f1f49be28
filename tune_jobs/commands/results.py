"""`dense-reward results RUN [--json]`: the trial table and the best trial of a sweep."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run dir, or the name of a sweep under ./runs")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")


def run(args: argparse.Namespace) -> int:
    from tune_jobs.results import console as make_console
    from tune_jobs.results import load_results, render_table, ui_command
    from tune_jobs.sweep import resolve_run

    manifest = resolve_run(args.run)
    results = load_results(manifest)
    if args.json:
        print(json.dumps(results.to_dict(), indent=2))
        return 0
    console = make_console()
    console.print(render_table(results))
    best = results.best
    if best is None:
        console.print("no trial has reported val_reward yet")
        return 0
    weights = ", ".join(f"{s}={w:.3f}" for s, w in best.weights.items())
    console.print(f"best trial: {best.trial_id}  val_reward={best.best_val_reward:.4f}  weights: {weights}")
    console.print(f"best checkpoint: {best.best_checkpoint}")
    console.print(f"MLflow: {manifest.tracking_uri}  (`{ui_command(manifest)}`)")
    return 0
