"""The trigger state interface: async invocation status and schedule checkpoints.

What the event plane remembers beside the broker: each async invocation's
status (queued, running, succeeded, failed, with its result), and for each
schedule the time up to which its fires are enqueued (the checkpoint), so a
restart neither repeats nor, with ``catch_up``, misses fires.

:class:`SQLiteTriggerState` keeps today's ``events.db`` layout;
:class:`skiff.store.trigger_state_postgres.PostgresTriggerState` is the shared
one. tests/store/test_trigger_state_contract.py is the contract of both.
"""

from __future__ import annotations

import abc
import sqlite3
import threading
from pathlib import Path

from skiff.store.sqlite import connect

#: The columns of an async status, in the order :meth:`TriggerState.async_status` keys them.
STATUS_KEYS = ("id", "app", "status", "attempts", "created", "updated", "status_code",
               "result", "error")


class TriggerState(abc.ABC):
    """Thread-safe; every method is atomic."""

    @abc.abstractmethod
    def accept_async(self, invocation_id: str, app: str, now: float) -> None:
        """Record a new async invocation as ``queued``; an id already recorded is kept."""

    @abc.abstractmethod
    def set_async_status(self, invocation_id: str, status: str, attempts: int, now: float, *,
                         code: int | None = None, result: bytes | None = None,
                         error: str | None = None) -> None: ...

    @abc.abstractmethod
    def async_status(self, invocation_id: str) -> dict | None:
        """The invocation's row keyed by :data:`STATUS_KEYS` (result as bytes), or None."""

    @abc.abstractmethod
    def checkpoint(self, app: str, trigger: str) -> float | None:
        """The time up to which ``trigger``'s fires are enqueued; None for a new schedule."""

    @abc.abstractmethod
    def set_checkpoint(self, app: str, trigger: str, ts: float) -> None: ...

    @abc.abstractmethod
    def forget_app(self, app: str) -> None:
        """Delete the app's async statuses and checkpoints (the app is deleted)."""

    def close(self) -> None:  # noqa: B027 - a backend without resources needs nothing
        """Release the backend's resources."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS async_invocations (
  id TEXT PRIMARY KEY,
  app TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  created REAL NOT NULL,
  updated REAL NOT NULL,
  status_code INTEGER,
  result BLOB,
  error TEXT
);
CREATE TABLE IF NOT EXISTS schedule_checkpoints (
  app TEXT NOT NULL,
  trigger TEXT NOT NULL,
  last_fire REAL NOT NULL,
  PRIMARY KEY (app, trigger)
);
"""


class SQLiteTriggerState(TriggerState):
    """``exclusive``: the platform's own file, opened by this process alone."""

    def __init__(self, path: str | Path, *, exclusive: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = connect(self.path, schema=_SCHEMA, exclusive=exclusive)

    def accept_async(self, invocation_id: str, app: str, now: float) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO async_invocations (id, app, status, created, "
                             "updated) VALUES (?, ?, 'queued', ?, ?)",
                             (invocation_id, app, now, now))

    def set_async_status(self, invocation_id: str, status: str, attempts: int, now: float, *,
                         code: int | None = None, result: bytes | None = None,
                         error: str | None = None) -> None:
        with self._lock:
            self._db.execute("UPDATE async_invocations SET status = ?, attempts = ?, updated = ?,"
                             " status_code = ?, result = ?, error = ? WHERE id = ?",
                             (status, attempts, now, code, result, error, invocation_id))

    def async_status(self, invocation_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(STATUS_KEYS)} FROM async_invocations "
                                   "WHERE id = ?", (invocation_id,)).fetchone()
        return None if row is None else _status(row)

    def checkpoint(self, app: str, trigger: str) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT last_fire FROM schedule_checkpoints WHERE app = ? "
                                   "AND trigger = ?", (app, trigger)).fetchone()
        return None if row is None else row[0]

    def set_checkpoint(self, app: str, trigger: str, ts: float) -> None:
        with self._lock:
            self._db.execute("INSERT INTO schedule_checkpoints VALUES (?, ?, ?) ON CONFLICT DO "
                             "UPDATE SET last_fire = max(last_fire, excluded.last_fire)",
                             (app, trigger, ts))

    def forget_app(self, app: str) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM async_invocations WHERE app = ?", (app,))
                self._db.execute("DELETE FROM schedule_checkpoints WHERE app = ?", (app,))
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _status(row: tuple) -> dict:
    out = dict(zip(STATUS_KEYS, row, strict=True))
    if out["result"] is not None:
        out["result"] = bytes(out["result"])
    return out
