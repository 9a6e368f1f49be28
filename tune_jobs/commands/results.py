"""`dense-reward results RUN [--json]`: the trial table, the best observed trial, the recommended weights,
the confirmation phase and both against the sparse-only trial."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run dir, or the name of a sweep under ./runs")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")


def run(args: argparse.Namespace) -> int:
    from tune_jobs.confirm import load_confirmation
    from tune_jobs.console import console, print_comparison, print_summary
    from tune_jobs.results import load_results
    from tune_jobs.rundir import resolve_run

    manifest = resolve_run(args.run)
    results = load_results(manifest)
    confirmation = load_confirmation(manifest)
    if args.json:
        summary = {**results.to_dict(), "confirmation": confirmation.to_dict() if confirmation else None}
        print(json.dumps(summary, indent=2))
        return 0
    out = console()
    if print_summary(out, results, manifest, confirmation):
        print_comparison(out, results, confirmed=confirmation is not None)
    return 0
