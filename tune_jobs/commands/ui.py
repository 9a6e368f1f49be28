"""`dense-reward ui [--port P] [--run-dir DIR | RUN]`: the MLflow UI on a sweep's store, on 127.0.0.1."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from dense_reward.errors import UserError
from tune_jobs import ui


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", help="sweep name (under ./runs) or run dir")
    parser.add_argument("--run-dir", type=Path, help="the sweep's run dir (instead of RUN)")
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default: %(default)s)")


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into the same clean exit as Ctrl-C, so the server child is stopped too.
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from tune_jobs.rundir import resolve_run

    if (args.run is None) == (args.run_dir is None):
        raise UserError("name the sweep: RUN (a name under ./runs or a run dir) or --run-dir DIR, not both")
    manifest = resolve_run(args.run_dir if args.run_dir is not None else args.run)
    if ui.is_server(manifest.tracking_uri):
        print(f"sweep {manifest.name} logs to the MLflow server {manifest.tracking_uri}; its UI is already there:")
        print(ui.runs_url(manifest.tracking_uri, manifest.experiment_id))
        return 0
    database = ui.sqlite_path(manifest.tracking_uri)
    if database is None:
        raise UserError(
            f"sweep {manifest.name} logs to {manifest.tracking_uri}; start `mlflow server --backend-store-uri "
            "<that URI>` yourself, `dense-reward ui` serves only the embedded sqlite store"
        )
    artifacts = Path(manifest.run_dir) / "mlartifacts"
    base_url = f"http://{ui.HOST}:{args.port}"
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    proc = ui.start_server(database, artifacts, args.port)
    try:
        ui.wait_ready(proc, base_url)
        print(f"MLflow UI for sweep {manifest.name} (Ctrl-C to stop):", flush=True)
        print(ui.runs_url(base_url, manifest.experiment_id), flush=True)
        proc.wait()
        if proc.returncode:
            print(f"mlflow server exited with status {proc.returncode}", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        ui.stop_server(proc)
