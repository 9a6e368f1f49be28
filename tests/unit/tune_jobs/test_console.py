"""`tune_jobs.console.ProgressTable`: a table redrawn in place on a terminal, one line per event elsewhere.

The fake trials follow Ray's order of calls: a trial's result hook runs before Ray stores the result on the
trial, and its end hooks while its status is still RUNNING.
"""

from __future__ import annotations

import io
import pickle
from types import SimpleNamespace

import pytest
from rich.console import Console

from tune_jobs import console as console_module
from tune_jobs.console import ProgressTable

WEIGHTS = "w sparse 1.000 attention 0.000"


def trial(trial_id: str, status: str = "RUNNING", epoch: int = 0, value: float | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        trial_id=trial_id,
        status=status,
        config={"weights": {"sparse": 1.0, "attention": 0.0}},
        last_result=result(epoch, value),
    )


def result(epoch: int, value: float | None) -> dict:
    return {} if value is None else {"epoch": epoch, "val_reward": value, "val_reward_sem": 0.01}


def report(table: ProgressTable, trials: list, reporting: SimpleNamespace, epoch: int, value: float) -> None:
    """As Ray does it: the callback first, then the result stored on the trial."""
    new = result(epoch, value)
    table.on_trial_result(epoch, trials, reporting, new)
    reporting.last_result = new


def capture(monkeypatch: pytest.MonkeyPatch, terminal: bool) -> io.StringIO:
    sink = io.StringIO()
    monkeypatch.setattr(
        console_module, "console", lambda: Console(file=sink, force_terminal=terminal, width=160, soft_wrap=True)
    )
    return sink


def test_on_a_terminal_the_table_is_redrawn_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = capture(monkeypatch, terminal=True)
    table = ProgressTable(["sparse", "attention"])
    running = trial("aaaa")
    report(table, [running], running, 1, 0.25)
    assert "0.2500 ± 0.0100" in sink.getvalue()  # the result being reported, not the one before it
    report(table, [running], running, 2, 0.5)
    table.on_trial_complete(3, [running], running)
    table.on_experiment_end([running])
    text = sink.getvalue()
    assert "0.5000 ± 0.0100" in text and "TERMINATED" in text and "trials: 1 of 1 done, 0 running" in text
    assert "\x1b[2K" in text  # rich's erase-line: the earlier table is overwritten, not printed below
    assert text.count("trials: ") == 4  # three draws, and the last one again as the display stops
    assert table.live is None


def test_off_a_terminal_each_result_and_each_end_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = capture(monkeypatch, terminal=False)
    table = ProgressTable(["sparse", "attention"], total=2)
    first, other = trial("aaaa"), trial("bbbb", epoch=1, value=0.125)
    trials = [first, other]
    report(table, trials, first, 1, 0.25)
    report(table, trials, first, 2, 0.5)
    table.on_trial_complete(3, trials, first)
    first.status = "TERMINATED"
    table.on_trial_error(4, trials, other)
    assert sink.getvalue().splitlines() == [
        f"trials: 0 of 2 done, 2 running | trial aaaa epoch 1: val_reward 0.2500 ± 0.0100 | {WEIGHTS}",
        f"trials: 0 of 2 done, 2 running | trial aaaa epoch 2: val_reward 0.5000 ± 0.0100 | {WEIGHTS}",
        f"trials: 1 of 2 done, 1 running | trial aaaa finished at epoch 2: val_reward 0.5000 ± 0.0100 | {WEIGHTS}",
        f"trials: 1 of 2 done, 0 running | trial bbbb failed at epoch 1: val_reward 0.1250 ± 0.0100 | {WEIGHTS}",
    ]
    assert table.live is None


def test_a_knob_is_on_its_trials_line(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = capture(monkeypatch, terminal=False)
    tuned = trial("aaaa")
    tuned.config["ppo.kl_coef"] = 0.05
    report(ProgressTable(["sparse", "attention"]), [tuned], tuned, 1, 0.25)
    assert sink.getvalue().rstrip().endswith(f"| {WEIGHTS} ppo.kl_coef 0.05")


def test_the_count_is_against_the_trial_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = capture(monkeypatch, terminal=False)
    trials = [trial("aaaa", epoch=3, value=0.5), trial("bbbb", epoch=1, value=0.25), trial("cccc", "PENDING")]
    ProgressTable(["sparse", "attention"], total=6).on_trial_complete(1, trials, trials[0])
    assert "trials: 1 of 6 done, 1 running" in sink.getvalue()
    # Past the budget (confirmation re-runs), the count follows the trials.
    ProgressTable(["sparse", "attention"], total=2).on_trial_complete(1, trials, trials[0])
    assert "trials: 1 of 3 done, 1 running" in sink.getvalue()


def test_the_callback_pickles_without_its_live_display(monkeypatch: pytest.MonkeyPatch) -> None:
    capture(monkeypatch, terminal=True)
    table = ProgressTable(["sparse", "attention"], total=4)
    running = trial("aaaa")
    report(table, [running], running, 1, 0.25)
    assert table.live is not None
    copy = pickle.loads(pickle.dumps(table))
    assert copy.live is None and copy.sources == ["sparse", "attention"] and copy.total == 4
    table.on_experiment_end([running])
