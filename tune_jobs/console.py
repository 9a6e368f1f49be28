"""Everything the service prints: the `rich` console, the live trial table, results tables and summaries."""

from __future__ import annotations

import atexit
import math
from typing import TYPE_CHECKING, Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.table import Table

from tune_jobs.config import METRIC
from tune_jobs.results import SEM, Recommended, SweepResults, TrialRow
from tune_jobs.rundir import SweepManifest
from tune_jobs.search.space import WEIGHTS_KEY

if TYPE_CHECKING:
    from tune_jobs.confirm import Confirmation, Interval

SPARSE = "sparse"


def console() -> Console:
    """A `rich` console; off a terminal (a log file, a job's output) wide enough that no column is cut."""
    terminal = Console(soft_wrap=True)
    return terminal if terminal.is_terminal else Console(soft_wrap=True, width=200)


def value_text(value: float | None, sem: float | None = None) -> str:
    """``0.4512 ± 0.0123``, ``0.4512`` without a standard error, ``-`` without a value."""
    if value is None:
        return "-"
    return f"{value:.4f}" if sem is None else f"{value:.4f} ± {sem:.4f}"


def weights_text(weights: dict[str, float]) -> str:
    return ", ".join(f"{source}={weight:.3f}" for source, weight in weights.items())


def knobs_text(knobs: dict[str, float]) -> str:
    """``  knobs: ppo.kl_coef=0.05`` or nothing."""
    return ("  knobs: " + ", ".join(f"{k}={v:.4g}" for k, v in knobs.items())) if knobs else ""


def ui_command(manifest: SweepManifest) -> str:
    """The command that opens the MLflow UI on this sweep's store."""
    return f"dense-reward ui --run-dir {manifest.run_dir}"


def render_table(results: SweepResults, title: str | None = None) -> Table:
    """One row per trial, by number: weights, knobs, epoch, val_reward ± its standard error, best epoch's val_reward.

    The best observed trial is marked ``*``, the recommended one ``R``.
    """
    knob_names = sorted({k for row in results.trials for k in row.knobs})
    best = results.best
    recommended = results.recommended.trial_id if results.recommended else None
    table = Table(title=title or f"sweep {results.name}", caption="* best observed   R recommended")
    table.add_column("#", justify="right")  # the trial's number in the summary lines ("trial 2 (id)")
    table.add_column("trial")
    table.add_column("status")
    for source in results.sources:
        table.add_column(f"w_{source}", justify="right")
    for knob in knob_names:
        table.add_column(knob, justify="right")
    table.add_column("epoch", justify="right")
    table.add_column("val_reward ± s.e.", justify="right")
    table.add_column("val_reward at best epoch", justify="right")
    for row in results.trials:
        marker = ("*" if best is not None and row.trial_id == best.trial_id else "") + (
            "R" if row.trial_id == recommended else ""
        )
        table.add_row(
            str(row.index),
            row.trial_id + (f" {marker}" if marker else ""),
            row.status,
            *[f"{row.weights[s]:.3f}" for s in results.sources],
            *[f"{row.knobs.get(k, float('nan')):.4g}" for k in knob_names],
            str(row.epoch),
            value_text(row.val_reward, row.val_reward_sem),
            value_text(row.best_val_reward, row.best_val_reward_sem),
        )
    return table


def interval_text(recommended: Recommended) -> str:
    """``0.4512 [0.4301, 0.4723]``, or the mean alone when no interval is known."""
    if recommended.lower is None or recommended.upper is None:
        return f"{recommended.mean:.4f} (no interval: standard errors unknown)"
    return f"{recommended.mean:.4f} [{recommended.lower:.4f}, {recommended.upper:.4f}]"


def print_answer(console: Console, results: SweepResults) -> bool:
    """The best observed trial and the recommended weights. False when no trial has a value yet."""
    best = results.best
    if best is None:
        console.print("no trial has reported val_reward yet", style="red")
        return False
    console.print(
        f"best observed: weights {weights_text(best.weights)}, val_reward "
        f"{value_text(best.best_val_reward, best.best_val_reward_sem)} at its best epoch (trial {best.trial_id})"
        + knobs_text(best.knobs),
        markup=False,
    )
    rec = results.recommended
    if rec is None:
        console.print("recommended:   none yet (no trial has run every epoch)")
        return True
    console.print(
        f"recommended:   weights {weights_text(rec.weights)}, val_reward "
        f"{'observed' if rec.fallback else 'GP posterior mean'} {interval_text(rec)} "
        f"(trial {rec.trial_id})" + knobs_text({k: v for k, v in rec.config.items() if k != WEIGHTS_KEY}),
        markup=False,
    )
    if rec.fallback:
        console.print(
            f"  not a GP's answer but the best observed trial: {rec.reason}", style="yellow", markup=False
        )
    elif rec.trial_id != best.trial_id:
        console.print(
            "  the GP ranks another evaluated point above the best observed one: its lead looks like noise"
        )
    return True


def print_summary(
    console: Console, results: SweepResults, manifest: SweepManifest, confirmation: Confirmation | None = None
) -> bool:
    """The trial table, best observed and recommended, the confirmation phase (when it ran), their
    checkpoints and the MLflow command.

    Returns False when no trial has reported val_reward yet.
    """
    console.print(render_table(results))
    if not print_answer(console, results):
        return False
    if confirmation is not None:
        print_confirmation(console, confirmation)
    best, recommended = results.best, results.recommended_trial
    console.print(f"best observed checkpoint: {best.best_checkpoint}")
    if recommended is not None:
        console.print(f"recommended checkpoint:   {recommended.best_checkpoint}")
    console.print(f"MLflow: {manifest.tracking_uri}  (open it with `{ui_command(manifest)}`)")
    unfinished = [row.trial_id for row in results.trials if row.status != "TERMINATED"]
    if unfinished:
        console.print(f"[yellow]trials not finished: {unfinished}[/yellow]")
    return True


def ci_text(interval: Interval | None, signed: bool = False) -> str:
    """``0.4512 [0.4301, 0.4723]`` (``+0.0120 [...]`` when `signed`); the mean alone below 2 values, ``-`` for none."""
    if interval is None:
        return "-"
    fmt = "+.4f" if signed else ".4f"
    if interval.lower is None or interval.upper is None:
        return f"{interval.mean:{fmt}}"
    return f"{interval.mean:{fmt}} [{interval.lower:{fmt}}, {interval.upper:{fmt}}]"


def render_confirmation(confirmation: Confirmation) -> Table:
    """One row per re-run point: weights, knobs, GP mean from the search, mean val_reward over the fresh seeds
    with its 95% CI, the paired difference to the sparse-only baseline with its CI, and the verdict."""
    from tune_jobs.confirm import LEVEL

    points = [*confirmation.candidates, confirmation.baseline]
    sources = list(confirmation.baseline.weights)
    knob_names = sorted({k for point in points for k in point.knobs})
    table = Table(
        title=f"confirmation: {len(confirmation.seeds)} fresh seeds {confirmation.seeds}, the same for every point",
        caption=f"intervals: {LEVEL:.0%} t-intervals over seeds; difference = point - baseline at the same seed; "
        "search estimate = GP posterior mean (the observed value when the search had too few trials for a GP)",
    )
    table.add_column("point")
    table.add_column("search trial")
    for source in sources:
        table.add_column(f"w_{source}", justify="right")
    for knob in knob_names:
        table.add_column(knob, justify="right")
    table.add_column("search estimate", justify="right")
    table.add_column(f"val_reward mean [{LEVEL:.0%} CI]", justify="right")
    table.add_column("difference to baseline", justify="right")
    table.add_column("verdict")
    for point in points:
        baseline = point is confirmation.baseline
        table.add_row(
            point.label,
            point.trial_id or "-",
            *[f"{point.weights[s]:.3f}" for s in sources],
            *[f"{point.knobs.get(k, float('nan')):.4g}" for k in knob_names],
            value_text(point.posterior_mean),
            f"{ci_text(point.mean)}  n={len(point.values)}",
            "-" if baseline else ci_text(point.difference, signed=True),
            "baseline" if baseline else point.verdict,
        )
    return table


def print_confirmation(console: Console, confirmation: Confirmation) -> None:
    """The confirmation table and one plain sentence: which candidate beats the baseline beyond noise, or none."""
    if confirmation.candidates:
        console.print(render_confirmation(confirmation))
    winner = confirmation.winner
    console.print(f"confirmation: {confirmation.summary()}", style=None if winner else "yellow", markup=False)
    if winner is not None:
        console.print(
            f"confirmed:     weights {weights_text(winner.weights)} (search trial {winner.trial_id})"
            + knobs_text(winner.knobs),
            markup=False,
        )
    if confirmation.retired_runs:
        console.print(
            f"MLflow runs of re-runs lost in the crash (rerun as new trials, soft-deleted): {confirmation.retired_runs}"
        )


def print_comparison(console: Console, results: SweepResults, confirmed: bool = False) -> None:
    """The recommended and the best observed trial against the sparse-only trial, on val_reward and gold_reward,
    and whether the lead of the first of them over sparse-only stands out of its validation noise.

    Args:
        confirmed: A confirmation phase ran (its table tests the lead with fresh seeds); otherwise the last
            line says how to run one.
    """
    sparse = next((row for row in results.trials if row.weights.get(SPARSE, 0.0) > 1 - 1e-9), None)
    best = results.best
    if best is None or sparse is None:
        return
    console.print(
        "\nagainst sparse-only (validation prompts; last epoch, and the epoch of the best val_reward):"
    )
    candidates: list[tuple[str, TrialRow]] = []
    if results.recommended_trial is not None:
        candidates.append(("recommended", results.recommended_trial))
    candidates += [("best observed", best), ("sparse-only", sparse)]
    for label, row in candidates:
        gold = row.metrics.get("gold_reward")
        console.print(
            f"  {label:<14} trial {row.index} ({row.trial_id}): last val_reward="
            f"{value_text(row.val_reward, row.val_reward_sem)}  val_reward at best epoch={value_text(row.best_val_reward)}  "
            f"last gold_reward={'n/a' if gold is None else f'{gold:.4f}'}"
        )
    if best.trial_id == sparse.trial_id:
        console.print("  the best observed trial is the sparse-only baseline: no weights tried beat it")
    if results.recommended_trial is not None and results.recommended_trial.trial_id == sparse.trial_id:
        console.print("  the recommended point is the sparse-only baseline")
    leader = next(((label, row) for label, row in candidates[:-1] if row.trial_id != sparse.trial_id), None)
    if leader is not None:
        print_lead(console, *leader, sparse, confirmed)


def print_lead(console: Console, label: str, row: TrialRow, sparse: TrialRow, confirmed: bool) -> None:
    """``row``'s last val_reward minus sparse-only's, against twice its standard error over the validation prompts."""
    if row.val_reward is None or sparse.val_reward is None:
        return
    lead = row.val_reward - sparse.val_reward
    if row.val_reward_sem is None or sparse.val_reward_sem is None:
        verdict = "no standard errors were reported, so its noise is unknown"
    else:
        two_se = 2 * math.hypot(row.val_reward_sem, sparse.val_reward_sem)
        beyond = abs(lead) > two_se
        verdict = f"{'beyond' if beyond else 'within'} 2 standard errors ({two_se:.4f}) of the validation prompts; " + (
            "one training run each, whose seed-to-seed spread those errors leave out"
            if beyond
            else "one run each does not tell them apart"
        )
    console.print(f"  {label} - sparse-only: {lead:+.4f} on the last val_reward, {verdict}", markup=False)
    if not confirmed:
        console.print(
            "  to test it with fresh seeds, give a sweep search.confirm_top_k (and search.confirm_seeds): after the "
            "search, the top points and sparse-only run again and a table says whether any beats sparse-only",
            markup=False,
        )


class ProgressTable(Callback):
    """Shows the trials (weights, knobs, epoch, val_reward ± s.e., status) as they report and end.

    On a terminal a table is redrawn in place (`rich.live.Live`) on every result. Elsewhere (a log file,
    a Ray job's log) each result and each trial's end is one line, with the count of trials done, so a
    log reads top to bottom. Picklable (Ray stores callbacks with the experiment), so a resumed sweep
    shows it too.
    """

    def __init__(self, sources: list[str], total: int | None = None) -> None:
        self.sources = list(sources)
        self.total = total
        """The sweep's trial budget (`search.trials`), for the count; None = count the trials started."""
        self.live: Live | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "live": None}

    @staticmethod
    def _states(trials: list[Any], trial: Any, event: str, result: dict | None) -> list[tuple[str, dict]]:
        """(status, last result) of each trial as of `event` on `trial`. Ray calls the result hook before it
        stores the result on the trial, and the end hooks while the trial's status is still RUNNING."""
        states = []
        for t in trials:
            status, last = str(t.status), t.last_result or {}
            if t is trial and event == "result" and result is not None:
                last = result
            elif t is trial and event != "result":
                status = "ERROR" if event == "failed" else "TERMINATED"
            states.append((status, last))
        return states

    def _count(self, states: list[tuple[str, dict]]) -> str:
        statuses = [status for status, _ in states]
        done, running = statuses.count("TERMINATED"), statuses.count("RUNNING")
        # Tune lists only the trials started so far; confirmation re-runs may add some past the budget.
        total = max(getattr(self, "total", None) or 0, len(states))  # a callback pickled before `total`
        return f"trials: {done} of {total} done, {running} running"

    @staticmethod
    def _knobs(trials: list[Any]) -> list[str]:
        return sorted({k for t in trials for k in (t.config or {}) if k != WEIGHTS_KEY})

    def _line(self, trials: list[Any], trial: Any, event: str, result: dict | None) -> str:
        """One trial's event: ``trials: 2 of 6 done, 2 running | trial ab12 epoch 1: val_reward ... | w ...``."""
        states = self._states(trials, trial, event, result)
        last = next(state for t, (_, state) in zip(trials, states, strict=True) if t is trial)
        config = trial.config or {}
        epoch = last.get("epoch", 0)
        what = f"epoch {epoch}" if event == "result" else f"{event} at epoch {epoch}"
        weights = " ".join(f"{s} {config.get(WEIGHTS_KEY, {}).get(s, 0.0):.3f}" for s in self.sources)
        knobs = "".join(f" {k} {config.get(k, float('nan')):.4g}" for k in self._knobs([trial]))
        value = value_text(last.get(METRIC), last.get(SEM))
        return f"{self._count(states)} | trial {trial.trial_id} {what}: val_reward {value} | w {weights}{knobs}"

    def _table(self, trials: list[Any], trial: Any, event: str, result: dict | None) -> Table:
        states = self._states(trials, trial, event, result)
        knobs = self._knobs(trials)
        table = Table(title=self._count(states))
        for column in [
            "trial",
            "status",
            *[f"w_{s}" for s in self.sources],
            *knobs,
            "epoch",
            "val_reward ± s.e.",
        ]:
            table.add_column(column, justify="left" if column in ("trial", "status") else "right")
        for t, (status, last) in zip(trials, states, strict=True):
            config = t.config or {}
            table.add_row(
                t.trial_id,
                status,
                *[f"{config.get(WEIGHTS_KEY, {}).get(s, 0.0):.3f}" for s in self.sources],
                *[f"{config.get(k, float('nan')):.4g}" for k in knobs],
                str(last.get("epoch", 0)),
                value_text(last.get(METRIC), last.get(SEM)),
            )
        return table

    def _show(self, trials: list[Any], trial: Any, event: str, result: dict | None = None) -> None:
        """`event`: "result" (`trial` reported `result`), "finished" or "failed"."""
        out = console()
        if not out.is_terminal:
            out.print(self._line(trials, trial, event, result), markup=False, highlight=False)
            return
        table = self._table(trials, trial, event, result)
        if self.live is None:
            self.live = Live(table, console=out, auto_refresh=False)
            self.live.start(refresh=True)
            atexit.register(self.on_experiment_end, trials)  # an interrupted sweep gives the terminal back too
        else:
            self.live.update(table, refresh=True)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any
    ) -> None:
        self._show(trials, trial, "result", result)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._show(trials, trial, "finished")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._show(trials, trial, "failed")
