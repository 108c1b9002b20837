"""Per-state durations of an execution, from its history: what the admin API and the
dashboard show of where an execution spent its time.

Each visit of a state is one row: the state's name, the frame it ran in (``""`` at the
top, ``Map#1.0[3]/`` inside a Map iteration), its type, when it was entered and exited
(epoch seconds), how long it took, and its status: ``EXITED`` (it went on to its next
state, a Catch included), ``RUNNING`` (no exit yet), or, for a state the execution's
end cut short, that end (``FAILED``, ``TIMED_OUT``, ``ABORTED``; ``CANCELLED`` for a
branch another's end stopped), its duration then counted to that end. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_ENTERED, _EXITED = "StateEntered", "StateExited"
_ENDS = {"ExecutionSucceeded": "SUCCEEDED", "ExecutionFailed": "FAILED",
         "ExecutionTimedOut": "TIMED_OUT", "ExecutionAborted": "ABORTED"}


def state_durations(history: Iterable[Mapping[str, Any]]) -> list[dict]:
    """One row per state visit, in the order the states were entered."""
    rows: list[dict] = []
    open_: dict[tuple[str, str], list[dict]] = {}  # (frame, name) -> visits not exited
    end: tuple[str, float] | None = None
    for ev in history:
        kind = ev.get("type", "")
        if kind.endswith(_ENTERED):
            row = {"name": ev.get("name"), "frame": ev.get("frame", ""),
                   "type": kind[: -len(_ENTERED)], "entered": ev.get("timestamp"),
                   "exited": None, "duration_ms": None, "status": "RUNNING"}
            rows.append(row)
            open_.setdefault((row["frame"], row["name"]), []).append(row)
        elif kind.endswith(_EXITED):
            visits = open_.get((ev.get("frame", ""), ev.get("name")))
            if visits:
                row = visits.pop()
                row["exited"] = ev.get("timestamp")
                row["duration_ms"] = _ms(row["entered"], row["exited"])
                row["status"] = "EXITED"
        elif kind in _ENDS:
            end = (_ENDS[kind], ev.get("timestamp"))
    if end is not None:  # what the end cut short ran until the end
        status, at = end
        for row in rows:
            if row["exited"] is None:
                row["status"] = "CANCELLED" if status == "SUCCEEDED" else status
                row["duration_ms"] = _ms(row["entered"], at)
    return rows


def _ms(start: Any, stop: Any) -> float | None:
    if not isinstance(start, int | float) or not isinstance(stop, int | float):
        return None
    return round(max(0.0, stop - start) * 1000, 3)
