"""state_durations: one row per state visit, from a history (a table of histories)."""

from __future__ import annotations

import pytest

from skiff.workflows.durations import state_durations


def _ev(kind: str, t: float, name: str = "", frame: str = "") -> dict:
    return {"type": kind, "timestamp": t, "name": name, "frame": frame}


@pytest.mark.parametrize(("history", "rows"), [
    pytest.param([_ev("ExecutionStarted", 0), _ev("PassStateEntered", 1.0, "A"),
                  _ev("PassStateExited", 1.25, "A"), _ev("TaskStateEntered", 1.25, "B"),
                  _ev("TaskStateExited", 3.0, "B"), _ev("ExecutionSucceeded", 3.0)],
                 [("A", "", "Pass", 250.0, "EXITED"), ("B", "", "Task", 1750.0, "EXITED")],
                 id="two states, each exited"),
    pytest.param([_ev("ExecutionStarted", 0), _ev("TaskStateEntered", 2.0, "T")],
                 [("T", "", "Task", None, "RUNNING")], id="a state still running"),
    pytest.param([_ev("MapStateEntered", 0.0, "M"),
                  _ev("TaskStateEntered", 0.5, "T", "M#1.0[0]/"),
                  _ev("TaskStateEntered", 0.5, "T", "M#1.0[1]/"),
                  _ev("TaskStateExited", 0.75, "T", "M#1.0[1]/"),
                  _ev("ExecutionFailed", 2.0)],
                 [("M", "", "Map", 2000.0, "FAILED"), ("T", "M#1.0[0]/", "Task", 1500.0, "FAILED"),
                  ("T", "M#1.0[1]/", "Task", 250.0, "EXITED")],
                 id="a failure cuts the open states short, each iteration its own row"),
    pytest.param([_ev("PassStateEntered", 0.0, "L"), _ev("PassStateExited", 0.5, "L"),
                  _ev("PassStateEntered", 0.5, "L"), _ev("PassStateExited", 2.5, "L"),
                  _ev("ExecutionAborted", 3.0)],
                 [("L", "", "Pass", 500.0, "EXITED"), ("L", "", "Pass", 2000.0, "EXITED")],
                 id="a loop visits a state twice: two rows"),
])
def test_state_durations(history, rows) -> None:  # noqa: ANN001
    got = [(r["name"], r["frame"], r["type"], r["duration_ms"], r["status"])
           for r in state_durations(history)]
    assert got == rows
