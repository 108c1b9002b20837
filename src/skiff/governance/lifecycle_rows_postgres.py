"""TTL clocks, archives and the notification outbox in PostgreSQL (see
lifecycle_rows.py), for several nodes on one database: a reminder one node
claims is not sent by another."""

from __future__ import annotations

from typing import Any

from skiff.governance.lifecycle_rows import (
    ArchiveRow,
    ClockRow,
    LifecycleRows,
    OutboxRow,
    _archive,
    _clock,
    _outbox,
    decode_days,
    encode_days,
    encode_routes,
)


class PostgresLifecycleRows(LifecycleRows):
    def __init__(self, db: Any) -> None:
        """``db``: a :class:`skiff.store.postgres.PostgresDatabase`."""
        self.db = db

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.db.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def _write(self, sql: str, args: tuple = ()) -> int:
        with self.db.connection() as conn:
            return conn.execute(sql, args).rowcount

    def start_clock(self, app: str, base: float, days: int | None) -> None:
        self._write("INSERT INTO gov_ttl VALUES (%s, %s, %s, '') ON CONFLICT (app) DO UPDATE "
                    "SET base = excluded.base, days = excluded.days, reminded = ''",
                    (app, base, days))

    def clock(self, app: str) -> ClockRow | None:
        rows = self._read("SELECT app, base, days, reminded FROM gov_ttl WHERE app = %s", (app,))
        return _clock(rows[0]) if rows else None

    def clocks(self) -> list[ClockRow]:
        return [_clock(r) for r in self._read(
            "SELECT app, base, days, reminded FROM gov_ttl ORDER BY app")]

    def claim_reminder(self, app: str, base: float, days: tuple[int, ...]) -> bool:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT reminded FROM gov_ttl WHERE app = %s AND base = %s "
                               "FOR UPDATE", (app, base)).fetchone()
            if row is None or set(days) & set(decode_days(row[0])):
                return False
            conn.execute("UPDATE gov_ttl SET reminded = %s WHERE app = %s",
                         (encode_days(decode_days(row[0]) + days), app))
            return True

    def drop_clock(self, app: str) -> None:
        self._write("DELETE FROM gov_ttl WHERE app = %s", (app,))

    def put_archive(self, row: ArchiveRow) -> None:
        self._write("INSERT INTO gov_archives VALUES (%s, %s, %s, %s, %s) ON CONFLICT (app) "
                    "DO UPDATE SET path = excluded.path, archived = excluded.archived, "
                    "reason = excluded.reason, routes = excluded.routes",
                    (row.app, row.path, row.archived, row.reason, encode_routes(row.routes)))

    def archive(self, app: str) -> ArchiveRow | None:
        rows = self._read("SELECT * FROM gov_archives WHERE app = %s", (app,))
        return _archive(rows[0]) if rows else None

    def archives(self) -> list[ArchiveRow]:
        return [_archive(r) for r in self._read("SELECT * FROM gov_archives ORDER BY app")]

    def drop_archive(self, app: str) -> bool:
        return self._write("DELETE FROM gov_archives WHERE app = %s", (app,)) == 1

    def enqueue(self, channel: str, payload: str, now: float) -> int:
        with self.db.connection() as conn:
            return conn.execute(
                "INSERT INTO gov_outbox (channel, payload, created, attempts, next_at, error) "
                "VALUES (%s, %s, %s, 0, %s, '') RETURNING id",
                (channel, payload, now, now)).fetchone()[0]

    def due(self, now: float, limit: int) -> list[OutboxRow]:
        return [OutboxRow(*r) for r in self._read(
            "SELECT id, channel, payload, attempts, next_at FROM gov_outbox "
            "WHERE delivered IS NULL AND next_at <= %s ORDER BY id LIMIT %s", (now, limit))]

    def delivered(self, id: int, now: float) -> None:
        self._write("UPDATE gov_outbox SET delivered = %s, attempts = attempts + 1, error = '' "
                    "WHERE id = %s", (now, id))

    def retry(self, id: int, next_at: float, error: str) -> None:
        self._write("UPDATE gov_outbox SET next_at = %s, attempts = attempts + 1, error = %s "
                    "WHERE id = %s", (next_at, error[:500], id))

    def outbox(self) -> list[dict]:
        return [_outbox(r) for r in self._read(
            "SELECT id, channel, payload, created, attempts, next_at, delivered, error "
            "FROM gov_outbox ORDER BY id")]
