"""The results of a sweep: the trial table, the best trial, and the sweep's MLflow artifacts.

Read from Ray's experiment folder (the source of truth for trial status and checkpoints), so the
table is available while a sweep runs, after it ends, and after its driver crashed.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dense_reward.errors import UserError
from tune_jobs import tracking
from tune_jobs.search.space import WEIGHTS_KEY
from tune_jobs.sweep import METRIC, MODE, SweepManifest


@dataclass
class TrialRow:
    """One trial of the table."""

    trial_id: str
    status: str
    weights: dict[str, float]
    knobs: dict[str, float]
    epoch: int
    val_reward: float | None
    """The last reported val_reward."""
    best_val_reward: float | None
    """The best val_reward over the trial's epochs (the one its best checkpoint has)."""
    best_checkpoint: str | None
    num_failures: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    """The last reported value of every other metric."""
    index: int = 0
    """Creation order of the trial in the sweep (1 = first suggestion)."""

    @property
    def trial_config(self) -> dict[str, Any]:
        """The trial's config as the searcher proposed it: weights plus knobs."""
        return {WEIGHTS_KEY: dict(self.weights), **self.knobs}


@dataclass
class SweepResults:
    """The trial table of a sweep and its best trial (highest val_reward over all epochs)."""

    name: str
    run_dir: str
    tracking_uri: str
    parent_run_id: str
    sources: list[str]
    trials: list[TrialRow]

    @property
    def best(self) -> TrialRow | None:
        scored = [row for row in self.trials if row.best_val_reward is not None]
        return max(scored, key=lambda row: row.best_val_reward) if scored else None

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "name": self.name,
            "run_dir": self.run_dir,
            "tracking_uri": self.tracking_uri,
            "parent_run_id": self.parent_run_id,
            "trials": [asdict(row) for row in self.trials],
            "best": asdict(best) if best else None,
        }


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value)):
        return float(value)
    return None


def _trial_index(experiment_tag: str) -> int:
    """Ray's experiment tag starts with the trial's counter: ``3_weights=...``."""
    head = str(experiment_tag).split("_", 1)[0]
    return int(head) if head.isdigit() else 0


def load_results(manifest: SweepManifest) -> SweepResults:
    """The trial table of a sweep from its Ray experiment folder; `UserError` when there is none yet."""
    from ray.tune import ExperimentAnalysis

    sources = list(manifest.config["shaping"]["sources"])
    # ExperimentAnalysis logs an error for every trial without a checkpoint; the table shows that already.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.CRITICAL)
    try:
        analysis = ExperimentAnalysis(manifest.experiment_path, default_metric=METRIC, default_mode=MODE)
    except (ValueError, FileNotFoundError) as error:
        raise UserError(
            f"sweep {manifest.name!r} has no trial state at {manifest.experiment_path} yet "
            f"({str(error).splitlines()[0]})"
        ) from None
    frames = analysis.trial_dataframes
    rows = []
    for trial in analysis.trials:
        config = trial.config or {}
        last = trial.last_result or {}
        frame = frames.get(trial.trial_id)
        values = []
        if frame is not None and METRIC in getattr(frame, "columns", []):
            values = [v for v in (_finite(x) for x in frame[METRIC].tolist()) if v is not None]
        checkpoint = analysis.get_best_checkpoint(trial) if last else None
        metrics = {
            key: float(value)
            for key, value in last.items()
            if key not in (METRIC, "epoch") and _finite(value) is not None and not key.startswith("config/")
        }
        rows.append(
            TrialRow(
                trial_id=trial.trial_id,
                status=str(trial.status),
                weights={s: float(config.get(WEIGHTS_KEY, {}).get(s, 0.0)) for s in sources},
                knobs={k: float(v) for k, v in config.items() if k != WEIGHTS_KEY},
                epoch=int(last.get("epoch", 0) or 0),
                val_reward=_finite(last.get(METRIC)),
                best_val_reward=max(values) if values else None,
                best_checkpoint=checkpoint.path if checkpoint is not None else None,
                num_failures=int(trial.run_metadata.num_failures),
                metrics=metrics,
                index=_trial_index(trial.experiment_tag),
            )
        )
    rows.sort(key=lambda row: row.index)
    return SweepResults(
        name=manifest.name,
        run_dir=manifest.run_dir,
        tracking_uri=manifest.tracking_uri,
        parent_run_id=manifest.parent_run_id,
        sources=sources,
        trials=rows,
    )


def write_csv(results: SweepResults, path: Path) -> Path:
    """One line per trial: id, status, epoch, val_reward, best_val_reward, weights, knobs, checkpoint."""
    knob_names = sorted({k for row in results.trials for k in row.knobs})
    header = ["trial_id", "status", "epoch", "val_reward", "best_val_reward", "num_failures"]
    header += [f"w_{s}" for s in results.sources] + knob_names + ["best_checkpoint"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in results.trials:
            writer.writerow(
                [row.trial_id, row.status, row.epoch, row.val_reward, row.best_val_reward, row.num_failures]
                + [row.weights[s] for s in results.sources]
                + [row.knobs.get(k) for k in knob_names]
                + [row.best_checkpoint]
            )
    return path


def ui_command(manifest: SweepManifest) -> str:
    """The command that opens the MLflow UI on this sweep's store."""
    return f"dense-reward ui --run-dir {manifest.run_dir}"


def print_summary(console: Any, results: SweepResults, manifest: SweepManifest) -> bool:
    """Print the trial table, the best trial (weights, knobs, checkpoint) and the MLflow command.

    Returns False when no trial has reported val_reward yet.
    """
    console.print(render_table(results))
    best = results.best
    if best is None:
        console.print("[red]no trial has reported val_reward yet[/red]")
        return False
    weights = ", ".join(f"{s}={w:.3f}" for s, w in best.weights.items())
    console.print(f"best trial: {best.trial_id}  val_reward={best.best_val_reward:.4f}")
    console.print(f"best weights: {weights}")
    if best.knobs:
        console.print("best knobs: " + ", ".join(f"{k}={v:.4g}" for k, v in best.knobs.items()))
    console.print(f"best checkpoint: {best.best_checkpoint}")
    console.print(f"MLflow: {manifest.tracking_uri}  (open it with `{ui_command(manifest)}`)")
    unfinished = [row.trial_id for row in results.trials if row.status != "TERMINATED"]
    if unfinished:
        console.print(f"[yellow]trials not finished: {unfinished}[/yellow]")
    return True


def finish_sweep(manifest: SweepManifest) -> SweepResults:
    """After `Tuner.fit`: write the results CSV and the plots, log them to the parent run, close it."""
    from tune_jobs.plots import convergence_plot, weights_plot

    results = load_results(manifest)
    run_dir = Path(manifest.run_dir)
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    csv_path = write_csv(results, run_dir / "results.csv")
    convergence = convergence_plot(results, plots / "bo_convergence.png")
    weights = weights_plot(results, plots / "weights.png")

    client = tracking.MlflowClient(tracking_uri=manifest.tracking_uri)
    run_id = manifest.parent_run_id
    client.log_artifact(run_id, str(csv_path))
    client.log_artifact(run_id, str(convergence), "plots")
    client.log_artifact(run_id, str(weights), "plots")
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "results.json"
        summary.write_text(json.dumps(results.to_dict(), indent=2))
        client.log_artifact(run_id, str(summary))
    best = results.best
    if best is not None:
        client.log_metric(run_id, "best_val_reward", best.best_val_reward)
        tags = {"best_trial_id": best.trial_id, "best_weights": json.dumps(best.weights)}
        if best.best_checkpoint:
            tags["best_checkpoint"] = best.best_checkpoint
        tracking.log_tags(client, run_id, tags)
    finished = all(row.status == "TERMINATED" for row in results.trials)
    client.set_terminated(run_id, status="FINISHED" if finished else "FAILED")
    return results


def console() -> Any:
    """A `rich` console; off a terminal (a log file, a job's output) wide enough that no column is cut."""
    from rich.console import Console

    terminal = Console(soft_wrap=True)
    return terminal if terminal.is_terminal else Console(soft_wrap=True, width=200)


def render_table(results: SweepResults, title: str | None = None) -> Any:
    """A `rich` table: one row per trial with weights, knobs, epoch, val_reward and status."""
    from rich.table import Table

    knob_names = sorted({k for row in results.trials for k in row.knobs})
    best = results.best
    table = Table(title=title or f"sweep {results.name}")
    table.add_column("trial")
    table.add_column("status")
    for source in results.sources:
        table.add_column(f"w_{source}", justify="right")
    for knob in knob_names:
        table.add_column(knob, justify="right")
    table.add_column("epoch", justify="right")
    table.add_column("val_reward", justify="right")
    table.add_column("best", justify="right")
    for row in results.trials:
        marker = " *" if best is not None and row.trial_id == best.trial_id else ""
        table.add_row(
            row.trial_id + marker,
            row.status,
            *[f"{row.weights[s]:.3f}" for s in results.sources],
            *[f"{row.knobs.get(k, float('nan')):.4g}" for k in knob_names],
            str(row.epoch),
            "-" if row.val_reward is None else f"{row.val_reward:.4f}",
            "-" if row.best_val_reward is None else f"{row.best_val_reward:.4f}",
        )
    return table
