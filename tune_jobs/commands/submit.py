"""`dense-reward submit CONFIG --address http://HEAD:8265 [--wait] [--name N] [--set KEY=VALUE ...]`."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from tune_jobs import submit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML sweep config (validated here, with the overrides, before submitting)")
    parser.add_argument(
        "--address",
        default=os.environ.get("RAY_API_SERVER_ADDRESS") or submit.DEFAULT_ADDRESS,
        help="Ray Jobs API of the head node (default: $RAY_API_SERVER_ADDRESS or %(default)s)",
    )
    parser.add_argument("--name", help="run name (sets `name` in the config)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, value read as YAML; repeatable, e.g. --set tracking.uri=http://mlflow:5000",
    )
    parser.add_argument(
        "--env",
        dest="env_vars",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment variable for the job and its trials; repeatable",
    )
    parser.add_argument(
        "--no-ship-code",
        dest="ship_code",
        action="store_false",
        help="run the project installed in the cluster's image instead of uploading this checkout's code",
    )
    parser.add_argument("--resume", action="store_true", help="resume the run of the same name (`sweep --resume`)")
    parser.add_argument("--wait", action="store_true", help="stream the job's logs and exit with its status")
    parser.add_argument(
        "--render",
        metavar="PATH",
        type=Path,
        help="write the resolved config (overrides applied) to PATH and stop; nothing is submitted "
        "(for entrypoints that run `dense-reward sweep PATH` on the cluster themselves)",
    )


def run(args: argparse.Namespace) -> int:
    overrides = submit.parse_assignments(args.overrides, "--set")
    if args.name:
        overrides["name"] = args.name
    config = submit.resolve_config(args.config, overrides)
    if args.render is not None:
        submit.write_config(config, args.render)
        print(args.render)
        return 0
    env_vars = {key: str(value) for key, value in submit.parse_assignments(args.env_vars, "--env").items()}
    client = submit.connect(args.address)
    with tempfile.TemporaryDirectory(prefix="dense-reward-job-") as staging:
        spec = submit.build_job(
            config,
            Path(staging),
            ship_code=args.ship_code,
            env_vars=env_vars,
            sweep_args=["--resume"] if args.resume else [],
        )
        for note in spec.notes:
            print(f"note: {note}", file=sys.stderr)
        job_id = submit.submit(client, spec)
    print(job_id, flush=True)
    if not args.wait:
        print(f"follow it with: ray job logs --follow --address {args.address} {job_id}", file=sys.stderr)
        return 0
    status = submit.follow(client, job_id)
    message = submit.job_message(client, job_id)
    print(f"job {job_id}: {status}" + (f" ({message})" if message and status != "SUCCEEDED" else ""), file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1
