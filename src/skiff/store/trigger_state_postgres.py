"""The shared trigger state: async statuses and schedule checkpoints in PostgreSQL.

A schedule claim is a transaction holding its checkpoint row ``FOR UPDATE``
(the row lock is keyed by the schedule itself, where an advisory lock would
hash it into 64 bits and make unrelated schedules wait on each other): a node
that claims the same schedule meanwhile waits for the commit, then reads the
checkpoint it left and finds nothing more due. The fires are enqueued on other
connections while the row is held (the broker's wake-ups are sent at its own
commits), so a claim never holds a queue's rows.

A checkpoint only moves forward (``GREATEST``): a node whose clock is behind
cannot move it back and make the next pass repeat fires.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from skiff.store.postgres import PostgresDatabase
from skiff.store.trigger_state import (
    PENDING,
    STATUS_KEYS,
    ScheduleClaim,
    TriggerState,
    _status,
)

#: How long a claim waits for another node's claim of the same schedule. A claim
#: lasts one enqueue; one held longer is a node stuck mid-claim, and this node's
#: schedule clock tries again on its next tick rather than waiting on it.
CLAIM_LOCK_TIMEOUT = "10s"

_UPSERT_CHECKPOINT = (
    "INSERT INTO schedule_checkpoints VALUES (%s, %s, %s) ON CONFLICT (app, trigger) DO "
    "UPDATE SET last_fire = GREATEST(schedule_checkpoints.last_fire, EXCLUDED.last_fire)")


class PostgresTriggerState(TriggerState):
    shared = True

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    def accept_async(self, invocation_id: str, app: str, now: float) -> bool:
        with self.db.connection() as conn:
            return conn.execute(
                "INSERT INTO async_invocations (id, app, status, created, updated) "
                "VALUES (%s, %s, 'queued', %s, %s) ON CONFLICT DO NOTHING",
                (invocation_id, app, now, now)).rowcount == 1

    def set_async_status(self, invocation_id: str, status: str, attempts: int, now: float, *,
                         code: int | None = None, result: bytes | None = None,
                         error: str | None = None) -> None:
        with self.db.connection() as conn:
            conn.execute("UPDATE async_invocations SET status = %s, attempts = %s, updated = %s,"
                         " status_code = %s, result = %s, error = %s WHERE id = %s",
                         (status, attempts, now, code, result, error, invocation_id))

    def async_status(self, invocation_id: str) -> dict | None:
        with self.db.connection() as conn:
            row = conn.execute(f"SELECT {', '.join(STATUS_KEYS)} FROM async_invocations "
                               "WHERE id = %s", (invocation_id,)).fetchone()
        return None if row is None else _status(row)

    def pending_async(self, app: str) -> int:
        # counted each time (the partial index of migration 0002 keeps it to the app's
        # pending rows): other nodes settle what this one accepted
        with self.db.connection() as conn:
            return conn.execute("SELECT count(*) FROM async_invocations WHERE app = %s "
                                "AND status = ANY(%s)", (app, list(PENDING))).fetchone()[0]

    def async_backlog(self) -> list[tuple[str, int, float]]:
        with self.db.connection() as conn:
            rows = conn.execute("SELECT app, count(*), min(created) FROM async_invocations "
                                "WHERE status = ANY(%s) GROUP BY app ORDER BY app",
                                (list(PENDING),)).fetchall()
        return [tuple(r) for r in rows]

    def async_waits(self, invocation_id: str) -> int:
        with self.db.connection() as conn:
            row = conn.execute("SELECT waits FROM async_waits WHERE id = %s",
                               (invocation_id,)).fetchone()
        return row[0] if row else 0

    def set_async_waits(self, invocation_id: str, waits: int) -> None:
        with self.db.connection() as conn:
            if waits:
                conn.execute("INSERT INTO async_waits VALUES (%s, %s) ON CONFLICT (id) DO "
                             "UPDATE SET waits = EXCLUDED.waits", (invocation_id, waits))
            else:
                conn.execute("DELETE FROM async_waits WHERE id = %s", (invocation_id,))

    def checkpoint(self, app: str, trigger: str) -> float | None:
        with self.db.connection() as conn:
            row = conn.execute("SELECT last_fire FROM schedule_checkpoints WHERE app = %s "
                               "AND trigger = %s", (app, trigger)).fetchone()
        return None if row is None else row[0]

    def set_checkpoint(self, app: str, trigger: str, ts: float) -> None:
        with self.db.connection() as conn:
            conn.execute(_UPSERT_CHECKPOINT, (app, trigger, ts))

    @contextlib.contextmanager
    def claim_schedule(self, app: str, trigger: str) -> Iterator[ScheduleClaim]:
        with self.db.transaction() as conn:
            conn.execute(f"SET LOCAL lock_timeout = '{CLAIM_LOCK_TIMEOUT}'")
            row = conn.execute("SELECT last_fire FROM schedule_checkpoints WHERE app = %s "
                               "AND trigger = %s FOR UPDATE", (app, trigger)).fetchone()
            # A schedule never seen has no row to hold: two nodes may both see it new,
            # and both only start its checkpoint (a first sight fires nothing)
            claim = ScheduleClaim(None if row is None else row[0])
            yield claim
            if claim.to is not None:
                conn.execute(_UPSERT_CHECKPOINT, (app, trigger, claim.to))

    def forget_app(self, app: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM async_waits WHERE id IN (SELECT id FROM "
                         "async_invocations WHERE app = %s)", (app,))
            conn.execute("DELETE FROM async_invocations WHERE app = %s", (app,))
            conn.execute("DELETE FROM schedule_checkpoints WHERE app = %s", (app,))
