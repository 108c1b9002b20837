"""The trigger state interface: async invocation status and schedule checkpoints.

What the event plane remembers beside the broker: each async invocation's
status (queued, retrying, succeeded, failed, with its result) and how often it
waited for another run of its idempotency key; and for each schedule the time
up to which its fires are enqueued (the checkpoint), so a restart neither
repeats nor, with ``catch_up``, misses fires.

Schedules fire once across nodes through :meth:`TriggerState.claim_schedule`:
the claimant holds the schedule's checkpoint against every other claimant while
it enqueues the fires after it, and moves it at the end. A claimant that dies
in between moves nothing, so the next one enqueues the same fires again (with
the same ids, which the broker keeps once while they are queued): a fire is
never lost, and repeated only if it already ran within that moment.

:class:`SQLiteTriggerState` keeps the ``events.db`` layout older servers wrote
(their statuses, waits and checkpoints are read as they are);
:class:`skiff.store.trigger_state_postgres.PostgresTriggerState` is the shared
one. tests/store/test_trigger_state_contract.py is the contract of both.
"""

from __future__ import annotations

import abc
import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from skiff.store.sqlite import connect

#: The columns of an async status, in the order :meth:`TriggerState.async_status` keys them.
STATUS_KEYS = ("id", "app", "status", "attempts", "created", "updated", "status_code",
               "result", "error")
#: The statuses of an async invocation accepted and not settled (what the per-app bound counts).
PENDING = ("queued", "retrying")


class ScheduleClaim:
    """A schedule held by one claimant: ``last`` is its checkpoint (None for a schedule
    never seen); :meth:`advance` sets the one written when the claim ends."""

    __slots__ = ("last", "to")

    def __init__(self, last: float | None) -> None:
        self.last = last
        self.to: float | None = None

    def advance(self, ts: float) -> None:
        """Checkpoint ``ts`` at the end of the claim (never behind one already written)."""
        self.to = ts


class TriggerState(abc.ABC):
    """Thread-safe; every method is atomic."""

    #: True when other nodes read and write the same state (what one node counted
    #: may change under it).
    shared = False

    # -- async invocations ---------------------------------------------------------
    @abc.abstractmethod
    def accept_async(self, invocation_id: str, app: str, now: float) -> bool:
        """Record a new async invocation as ``queued``; an id already recorded is kept
        (False)."""

    @abc.abstractmethod
    def set_async_status(self, invocation_id: str, status: str, attempts: int, now: float, *,
                         code: int | None = None, result: bytes | None = None,
                         error: str | None = None) -> None: ...

    @abc.abstractmethod
    def async_status(self, invocation_id: str) -> dict | None:
        """The invocation's row keyed by :data:`STATUS_KEYS` (result as bytes), or None."""

    @abc.abstractmethod
    def pending_async(self, app: str) -> int:
        """How many of the app's async invocations are :data:`PENDING`."""

    @abc.abstractmethod
    def async_backlog(self) -> list[tuple[str, int, float]]:
        """(app, :data:`PENDING` invocations, when the oldest was accepted) of each app
        that has any, by app (for metrics at scrape time)."""

    @abc.abstractmethod
    def async_waits(self, invocation_id: str) -> int:
        """How often the invocation was put back because another run held its
        idempotency key (those retries spend no attempt); 0 when never."""

    @abc.abstractmethod
    def set_async_waits(self, invocation_id: str, waits: int) -> None:
        """Set the count of :meth:`async_waits`; 0 forgets it."""

    # -- schedules -----------------------------------------------------------------
    @abc.abstractmethod
    def checkpoint(self, app: str, trigger: str) -> float | None:
        """The time up to which ``trigger``'s fires are enqueued; None for a new schedule."""

    @abc.abstractmethod
    def set_checkpoint(self, app: str, trigger: str, ts: float) -> None:
        """Move the checkpoint to ``ts``, never back."""

    @abc.abstractmethod
    def claim_schedule(self, app: str, trigger: str) -> contextlib.AbstractContextManager[
            ScheduleClaim]:
        """Hold ``trigger``'s checkpoint against every other claimant (another thread,
        another node) until the block ends; a claimant that waited for it sees the
        checkpoint the one before it left. The checkpoint :meth:`ScheduleClaim.advance`
        named is written when the block ends without an exception, else nothing is."""

    # -- apps ------------------------------------------------------------------------
    @abc.abstractmethod
    def forget_app(self, app: str) -> None:
        """Delete the app's async statuses, their waits and its checkpoints (the app is
        deleted)."""

    def close(self) -> None:  # noqa: B027 - a backend without resources needs nothing
        """Release the backend's resources."""


# The layout older servers' event planes wrote (with IF NOT EXISTS, so their files open
# unchanged); async_waits has no app column: forget_app finds an app's waits by the ids
# of its invocations.
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
CREATE INDEX IF NOT EXISTS async_invocations_app ON async_invocations (app, status);
CREATE TABLE IF NOT EXISTS async_waits (
  id TEXT PRIMARY KEY,
  waits INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule_checkpoints (
  app TEXT NOT NULL,
  trigger TEXT NOT NULL,
  last_fire REAL NOT NULL,
  PRIMARY KEY (app, trigger)
);
"""


class SQLiteTriggerState(TriggerState):
    """``exclusive``: the platform's own file, opened by this process alone.

    Its pending counts are counted from the table once per app, then kept as statuses
    change: a count per accepted invocation would scan up to the bound's 10,000 rows
    of an app under a flood (only this process writes the file, so the count holds).
    """

    def __init__(self, path: str | Path, *, exclusive: bool = False) -> None:
        self.path = Path(path)
        # reentrant: a schedule claim holds it for its transaction while the claimant
        # records the fires it enqueues (in that same transaction)
        self._lock = threading.RLock()
        self._db = connect(self.path, schema=_SCHEMA, exclusive=exclusive)
        self._pending: dict[str, int] = {}  # app -> PENDING count, once counted
        self._counts_own = exclusive  # another connection's writes would not be seen

    def accept_async(self, invocation_id: str, app: str, now: float) -> bool:
        with self._lock:
            added = self._db.execute(
                "INSERT OR IGNORE INTO async_invocations (id, app, status, created, updated) "
                "VALUES (?, ?, 'queued', ?, ?)", (invocation_id, app, now, now)).rowcount == 1
            if added and app in self._pending:
                self._pending[app] += 1
        return added

    def set_async_status(self, invocation_id: str, status: str, attempts: int, now: float, *,
                         code: int | None = None, result: bytes | None = None,
                         error: str | None = None) -> None:
        with self._lock:
            row = self._db.execute("SELECT app, status FROM async_invocations WHERE id = ?",
                                   (invocation_id,)).fetchone()
            if row is None:
                return
            self._db.execute("UPDATE async_invocations SET status = ?, attempts = ?, updated = ?,"
                             " status_code = ?, result = ?, error = ? WHERE id = ?",
                             (status, attempts, now, code, result, error, invocation_id))
            app, before = row
            if app in self._pending:
                self._pending[app] += (status in PENDING) - (before in PENDING)

    def async_status(self, invocation_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(STATUS_KEYS)} FROM async_invocations "
                                   "WHERE id = ?", (invocation_id,)).fetchone()
        return None if row is None else _status(row)

    def pending_async(self, app: str) -> int:
        with self._lock:
            count = self._pending.get(app)
            if count is None:
                count = self._db.execute(
                    "SELECT count(*) FROM async_invocations WHERE app = ? AND status IN (?, ?)",
                    (app, *PENDING)).fetchone()[0]
                if self._counts_own:
                    self._pending[app] = count
        return count

    def async_backlog(self) -> list[tuple[str, int, float]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT app, count(*), min(created) FROM async_invocations WHERE status IN "
                "(?, ?) GROUP BY app ORDER BY app", PENDING).fetchall()
        return [tuple(r) for r in rows]

    def async_waits(self, invocation_id: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT waits FROM async_waits WHERE id = ?",
                                   (invocation_id,)).fetchone()
        return row[0] if row else 0

    def set_async_waits(self, invocation_id: str, waits: int) -> None:
        with self._lock:
            if waits:
                self._db.execute("INSERT INTO async_waits VALUES (?, ?) ON CONFLICT DO UPDATE "
                                 "SET waits = excluded.waits", (invocation_id, waits))
            else:
                self._db.execute("DELETE FROM async_waits WHERE id = ?", (invocation_id,))

    def checkpoint(self, app: str, trigger: str) -> float | None:
        with self._lock:
            return self._checkpoint(app, trigger)

    def _checkpoint(self, app: str, trigger: str) -> float | None:
        row = self._db.execute("SELECT last_fire FROM schedule_checkpoints WHERE app = ? "
                               "AND trigger = ?", (app, trigger)).fetchone()
        return None if row is None else row[0]

    def set_checkpoint(self, app: str, trigger: str, ts: float) -> None:
        with self._lock:
            self._set_checkpoint(app, trigger, ts)

    def _set_checkpoint(self, app: str, trigger: str, ts: float) -> None:
        self._db.execute("INSERT INTO schedule_checkpoints VALUES (?, ?, ?) ON CONFLICT DO "
                         "UPDATE SET last_fire = max(last_fire, excluded.last_fire)",
                         (app, trigger, ts))

    @contextlib.contextmanager
    def claim_schedule(self, app: str, trigger: str) -> Iterator[ScheduleClaim]:
        # BEGIN IMMEDIATE takes the file's write lock: another connection to the file
        # waits for it too; in this process the lock serializes every other thread
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                claim = ScheduleClaim(self._checkpoint(app, trigger))
                yield claim
                if claim.to is not None:
                    self._set_checkpoint(app, trigger, claim.to)
            except BaseException:
                self._db.execute("ROLLBACK")
                self._pending.clear()  # accepts inside the claim are undone: count again
                raise
            self._db.execute("COMMIT")

    def forget_app(self, app: str) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM async_waits WHERE id IN (SELECT id FROM "
                                 "async_invocations WHERE app = ?)", (app,))
                self._db.execute("DELETE FROM async_invocations WHERE app = ?", (app,))
                self._db.execute("DELETE FROM schedule_checkpoints WHERE app = ?", (app,))
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._pending.pop(app, None)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _status(row: tuple) -> dict:
    out = dict(zip(STATUS_KEYS, row, strict=True))
    if out["result"] is not None:
        out["result"] = bytes(out["result"])
    return out
