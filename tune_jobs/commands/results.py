"""`dense-reward results RUN [--json]`: the trial table, the best observed trial and the recommended weights."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run dir, or the name of a sweep under ./runs")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")


def run(args: argparse.Namespace) -> int:
    from tune_jobs.console import console, print_summary
    from tune_jobs.results import load_results
    from tune_jobs.rundir import resolve_run

    manifest = resolve_run(args.run)
    results = load_results(manifest)
    if args.json:
        print(json.dumps(results.to_dict(), indent=2))
        return 0
    print_summary(console(), results, manifest)
    return 0
