"""`dense-reward jobs --address http://HEAD:8265 [--stop ID]`: list or stop jobs on a Ray cluster."""

from __future__ import annotations

import argparse
import json
import os

from tune_jobs import submit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=os.environ.get("RAY_API_SERVER_ADDRESS") or submit.DEFAULT_ADDRESS,
        help="Ray Jobs API of the head node (default: $RAY_API_SERVER_ADDRESS or %(default)s)",
    )
    parser.add_argument("--stop", metavar="ID", help="stop this job instead of listing")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")


def run(args: argparse.Namespace) -> int:
    client = submit.connect(args.address)
    if args.stop:
        stopped = submit.stop(client, args.stop)
        print(f"{args.stop}: {'stop requested' if stopped else 'not running'}")
        return 0
    rows = submit.list_jobs(client)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no jobs on {args.address}")
        return 0
    columns = ["id", "status", "started", "run", "entrypoint"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns[:-1]}
    print("  ".join(c.upper().ljust(widths.get(c, 0)) for c in columns).rstrip())
    for row in rows:
        print("  ".join(row[c].ljust(widths.get(c, 0)) for c in columns).rstrip())
    return 0
