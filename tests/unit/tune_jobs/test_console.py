"""`tune_jobs.console.ProgressTable`: a table redrawn in place on a terminal, one line per event elsewhere."""

from __future__ import annotations

import io
import pickle
from types import SimpleNamespace

import pytest
from rich.console import Console

from tune_jobs import console as console_module
from tune_jobs.console import ProgressTable


def trial(trial_id: str, status: str, epoch: int, value: float | None) -> SimpleNamespace:
    result = {} if value is None else {"epoch": epoch, "val_reward": value, "val_reward_sem": 0.01}
    return SimpleNamespace(
        trial_id=trial_id, status=status, config={"weights": {"sparse": 1.0, "attention": 0.0}}, last_result=result
    )


def capture(monkeypatch: pytest.MonkeyPatch, terminal: bool) -> io.StringIO:
    sink = io.StringIO()
    monkeypatch.setattr(
        console_module, "console", lambda: Console(file=sink, force_terminal=terminal, width=160, soft_wrap=True)
    )
    return sink


def test_on_a_terminal_the_table_is_redrawn_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = capture(monkeypatch, terminal=True)
    table = ProgressTable(["sparse", "attention"])
    first = trial("aaaa", "RUNNING", 1, 0.25)
    table.on_trial_result(1, [first], first, {})
    second = trial("aaaa", "RUNNING", 2, 0.5)
    table.on_trial_result(2, [second], second, {})  # within min_interval: still redrawn
    done = trial("aaaa", "TERMINATED", 2, 0.5)
    table.on_trial_complete(3, [done], done)
    table.on_experiment_end([done])
    text = sink.getvalue()
    assert "0.2500 ± 0.0100" in text and "0.5000 ± 0.0100" in text and "TERMINATED" in text
    assert "\x1b[2K" in text  # rich's erase-line: the earlier table is overwritten, not printed below
    assert text.count("trials: ") == 4  # three draws, and the last one again as the display stops
    assert table.live is None


def test_off_a_terminal_each_result_and_each_end_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = capture(monkeypatch, terminal=False)
    table = ProgressTable(["sparse", "attention"], total=2)
    first = trial("aaaa", "RUNNING", 1, 0.25)
    other = trial("bbbb", "RUNNING", 1, 0.125)
    table.on_trial_result(1, [first, other], first, {})
    second = trial("aaaa", "RUNNING", 2, 0.5)
    table.on_trial_result(2, [second, other], second, {})
    # Ray calls the end hook while the trial's status is still RUNNING: it counts as done all the same.
    table.on_trial_complete(3, [second, other], second)
    table.on_trial_error(4, [second, other], other)
    lines = sink.getvalue().splitlines()
    assert lines == [
        "trials: 0 of 2 done, 2 running | trial aaaa epoch 1: val_reward 0.2500 ± 0.0100 | w sparse 1.000 attention 0.000",
        "trials: 0 of 2 done, 2 running | trial aaaa epoch 2: val_reward 0.5000 ± 0.0100 | w sparse 1.000 attention 0.000",
        "trials: 1 of 2 done, 1 running | trial aaaa finished at epoch 2: val_reward 0.5000 ± 0.0100 | w sparse 1.000 "
        "attention 0.000",
        "trials: 0 of 2 done, 1 running | trial bbbb failed at epoch 1: val_reward 0.1250 ± 0.0100 | w sparse 1.000 "
        "attention 0.000",
    ]
    assert table.live is None


def test_a_knob_is_on_its_trials_line(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = capture(monkeypatch, terminal=False)
    tuned = trial("aaaa", "RUNNING", 1, 0.25)
    tuned.config["ppo.kl_coef"] = 0.05
    ProgressTable(["sparse", "attention"]).on_trial_result(1, [tuned], tuned, {})
    assert sink.getvalue().rstrip().endswith("| w sparse 1.000 attention 0.000 ppo.kl_coef 0.05")


def test_the_title_counts_against_the_trial_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = capture(monkeypatch, terminal=False)
    table = ProgressTable(["sparse", "attention"], total=6)
    trials = [trial("aaaa", "TERMINATED", 3, 0.5), trial("bbbb", "RUNNING", 1, 0.25), trial("cccc", "PENDING", 0, None)]
    table.on_trial_complete(1, trials, trials[0])
    assert "trials: 1 of 6 done, 1 running" in sink.getvalue()
    # Past the budget (confirmation re-runs), the count follows the trials.
    unbudgeted = ProgressTable(["sparse", "attention"], total=2)
    unbudgeted.on_trial_complete(1, trials, trials[0])
    assert "trials: 1 of 3 done, 1 running" in sink.getvalue()


def test_the_callback_pickles_without_its_live_display(monkeypatch: pytest.MonkeyPatch) -> None:
    capture(monkeypatch, terminal=True)
    table = ProgressTable(["sparse", "attention"], total=4)
    running = trial("aaaa", "RUNNING", 1, 0.25)
    table.on_trial_result(1, [running], running, {})
    assert table.live is not None
    copy = pickle.loads(pickle.dumps(table))
    assert copy.live is None and copy.sources == ["sparse", "attention"] and copy.total == 4
    table.on_experiment_end([running])
