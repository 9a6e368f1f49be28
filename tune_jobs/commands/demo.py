"""`dense-reward demo`: build the offline demo kit (first run only), run the demo sweep, compare.

The sweep is `tune_jobs/configs/demo.yaml`: a BO search over the weights of five sources on
SmolLM2-135M-Instruct with a MiniLM reward model trained to agree with VADER. Its first points are
sparse-only and ABC, so the table always holds the two baselines next to what BO found; the summary
gives the recommended weights (the search's answer, with an interval) beside the best observed trial.

Every run gets its own run dir: ``./runs/demo``, then ``./runs/demo-2``, ... unless ``--name`` is
given; ``--resume`` continues ``./runs/demo`` (or ``--name``) after an interruption.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dense_reward.errors import UserError

if TYPE_CHECKING:
    from tune_jobs.config import SweepConfig

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG, help="sweep config (default: demo.yaml)")
    parser.add_argument("--trials", type=int, help="number of trials (overrides search.trials)")
    parser.add_argument(
        "--name", help="run name; the run dir is ./runs/<name> (default: demo, or demo-2, ... when taken)"
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted demo sweep")
    parser.add_argument("--kit-only", action="store_true", help="build the kit and stop")


def free_run_dir(config: SweepConfig, explicit_name: bool) -> tuple[SweepConfig, Path]:
    """The config and run dir of a new demo run: ``runs/<name>``, or ``runs/<name>-2``, ... when taken."""
    from tune_jobs.rundir import default_run_dir, read_manifest

    run_dir = default_run_dir(config)
    if explicit_name or read_manifest(run_dir) is None:
        return config, run_dir
    if config.resources.storage_path and "://" not in config.resources.storage_path:
        raise UserError(
            f"{run_dir} already holds sweep {config.name!r} and resources.storage_path fixes the run dir; "
            "pass --resume to continue it, or set another resources.storage_path"
        )
    base, number = config.name, 2
    while read_manifest(default_run_dir(config.with_overrides({"name": f"{base}-{number}"}))) is not None:
        number += 1
    config = config.with_overrides({"name": f"{base}-{number}"})
    return config, default_run_dir(config)


def run(args: argparse.Namespace) -> int:
    from dense_reward.builtin.demo.kit import build_kit, kit_names_in
    from tune_jobs.commands.sweep import sweep_and_summarise, with_cli_overrides
    from tune_jobs.config import load_sweep_config
    from tune_jobs.console import console as make_console
    from tune_jobs.console import print_comparison
    from tune_jobs.rundir import default_run_dir

    console = make_console()
    if not args.config.is_file():
        raise UserError(f"--config: demo config not found: {args.config}")
    config = with_cli_overrides(load_sweep_config(args.config), args.name, args.trials)

    started = time.perf_counter()
    models = config.models
    names = kit_names_in([models.policy.path, models.reward.path] + ([models.reference.path] if models.reference else []))
    console.print("[bold]1/2 demo kit[/bold] (SmolLM2-135M-Instruct policy, MiniLM reward model, VADER gold)")
    if names:
        build_kit(progress=lambda line: console.print(f"  {line}"), names=names)
        console.print(f"  kit ready in {time.perf_counter() - started:.0f} s")
    else:
        console.print(f"  {args.config.name} names no kit model: nothing to build")
    if args.kit_only:
        return 0

    if args.resume:
        run_dir = default_run_dir(config)
    else:
        config, run_dir = free_run_dir(config, explicit_name=bool(args.name))
    sources = ", ".join(config.shaping.sources)
    console.print(
        f"[bold]2/2 BO sweep[/bold] over the weights of {sources}: {config.search.trials} trials, "
        f"{config.search.max_concurrent} at once, {config.ppo.epochs} epochs each"
    )
    status, outcome = sweep_and_summarise(config, run_dir, resume=args.resume, console=console)
    print_comparison(console, outcome.results, confirmed=outcome.confirmation is not None)
    run_path = Path(outcome.manifest.run_dir)
    console.print(f"\nplots: {run_path / 'plots'}  results: {run_path / 'results.csv'}")
    elapsed = time.perf_counter() - started
    if any(row.status != "TERMINATED" for row in outcome.results.trials):
        console.print(
            f"[yellow]demo stopped after {elapsed:.0f} s with trials unfinished; continue it with "
            f"`dense-reward demo --resume --name {config.name}`[/yellow]"
        )
        return 1
    console.print(f"demo finished in {elapsed:.0f} s")
    return status
