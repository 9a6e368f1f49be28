"""`environment` sets variables for a block and leaves the process environment as it found it."""

from __future__ import annotations

import os

import pytest

from tune_jobs.environment import environment


def test_environment_sets_inside_and_restores_set_and_unset_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DR_TEST_KEPT", "before")
    monkeypatch.delenv("DR_TEST_NEW", raising=False)
    with pytest.raises(RuntimeError), environment({"DR_TEST_KEPT": "inside", "DR_TEST_NEW": "1"}):
        assert os.environ["DR_TEST_KEPT"] == "inside" and os.environ["DR_TEST_NEW"] == "1"
        raise RuntimeError("the block fails")
    assert os.environ["DR_TEST_KEPT"] == "before"
    assert "DR_TEST_NEW" not in os.environ
