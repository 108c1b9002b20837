"""The shared trigger state: async statuses and schedule checkpoints in PostgreSQL.

A checkpoint only moves forward (``GREATEST``): two nodes firing the same
schedule (before advisory-locked once-only schedules are wired) cannot move
it back and make the next pass repeat fires.
"""

from __future__ import annotations

from skiff.store.postgres import PostgresDatabase
from skiff.store.trigger_state import STATUS_KEYS, TriggerState, _status


class PostgresTriggerState(TriggerState):
    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    def accept_async(self, invocation_id: str, app: str, now: float) -> None:
        with self.db.connection() as conn:
            conn.execute("INSERT INTO async_invocations (id, app, status, created, updated) "
                         "VALUES (%s, %s, 'queued', %s, %s) ON CONFLICT DO NOTHING",
                         (invocation_id, app, now, now))

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

    def checkpoint(self, app: str, trigger: str) -> float | None:
        with self.db.connection() as conn:
            row = conn.execute("SELECT last_fire FROM schedule_checkpoints WHERE app = %s "
                               "AND trigger = %s", (app, trigger)).fetchone()
        return None if row is None else row[0]

    def set_checkpoint(self, app: str, trigger: str, ts: float) -> None:
        with self.db.connection() as conn:
            conn.execute("INSERT INTO schedule_checkpoints VALUES (%s, %s, %s) "
                         "ON CONFLICT (app, trigger) DO UPDATE SET last_fire = "
                         "GREATEST(schedule_checkpoints.last_fire, EXCLUDED.last_fire)",
                         (app, trigger, ts))

    def forget_app(self, app: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM async_invocations WHERE app = %s", (app,))
            conn.execute("DELETE FROM schedule_checkpoints WHERE app = %s", (app,))
