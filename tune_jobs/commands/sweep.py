"""`dense-reward sweep CONFIG [--name N] [--address A] [--trials N] [--max-concurrent N] [--resume]`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from dense_reward.errors import UserError
from tune_jobs.config import SweepConfig, load_sweep_config

if TYPE_CHECKING:
    from rich.console import Console

    from tune_jobs.rundir import SweepManifest
    from tune_jobs.sweep import SweepOutcome


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="YAML sweep config (optional with --resume)")
    parser.add_argument(
        "--name", help="run name (default: the config's `name`); the run dir is ./runs/<name>"
    )
    parser.add_argument("--run-dir", type=Path, help="run dir (default: ./runs/<name>)")
    parser.add_argument(
        "--address", help="Ray cluster: `auto` or ray://host:10001 (default: a private local Ray)"
    )
    parser.add_argument("--trials", type=int, help="number of trials (overrides search.trials)")
    parser.add_argument("--max-concurrent", type=int, help="trials at once (overrides search.max_concurrent)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the sweep in the run dir after a crash"
    )


def with_cli_overrides(
    config: SweepConfig, name: str | None, trials: int | None, max_concurrent: int | None = None
) -> SweepConfig:
    """`config` with the `--name`, `--trials` and `--max-concurrent` a user gave (None = keep the config's)."""
    overrides: dict[str, object] = {}
    if name:
        overrides["name"] = name
    if trials is not None:
        overrides["search.trials"] = trials
    if max_concurrent is not None:
        overrides["search.max_concurrent"] = max_concurrent
    return config.with_overrides(overrides) if overrides else config


def run(args: argparse.Namespace) -> int:
    from tune_jobs.rundir import RUNS_ROOT, default_run_dir, resolve_run

    if args.config is None and not args.resume:
        raise UserError("a CONFIG file is needed (only --resume can go without one)")
    if args.config is not None:
        config = with_cli_overrides(
            load_sweep_config(args.config), args.name, args.trials, args.max_concurrent
        )
        run_dir = args.run_dir or default_run_dir(config)
    else:
        if not (args.run_dir or args.name):
            raise UserError("--resume without CONFIG needs --name or --run-dir")
        run_dir = args.run_dir or RUNS_ROOT / args.name
        config = resolve_run(run_dir).load_config()

    status, _ = sweep_and_summarise(config, run_dir, address=args.address, resume=args.resume)
    return status


def sweep_and_summarise(
    config: SweepConfig,
    run_dir: Path,
    address: str | None = None,
    resume: bool = False,
    console: Console | None = None,
) -> tuple[int, SweepOutcome]:
    """Run (or resume) the sweep with the live progress table, then print its summary.

    Returns ``(exit status, SweepOutcome)``; the status is 1 when no trial reported val_reward.
    """
    from tune_jobs.console import ProgressTable, print_summary
    from tune_jobs.console import console as make_console
    from tune_jobs.rundir import session_folder_note
    from tune_jobs.sweep import run_sweep

    out = console or make_console()

    def announce(manifest: SweepManifest) -> None:
        verb = "resuming" if resume else "starting"
        out.print(f"{verb} sweep [bold]{manifest.name}[/bold] in {manifest.run_dir}")
        out.print(f"MLflow: {manifest.tracking_uri} (parent run {manifest.parent_run_id})")
        note = session_folder_note(Path(manifest.run_dir))
        if note:
            out.print(f"warning: {note}", style="yellow", markup=False)

    outcome = run_sweep(
        config,
        run_dir=run_dir,
        address=address,
        resume=resume,
        callbacks=[ProgressTable(config.shaping.sources, total=config.search.trials)],
        on_ready=announce,
    )
    if outcome.retired_runs:
        out.print(
            f"MLflow runs of trials lost in the crash (rerun as new trials, soft-deleted): {outcome.retired_runs}"
        )
    return (0 if print_summary(out, outcome.results, outcome.manifest, outcome.confirmation) else 1), outcome
