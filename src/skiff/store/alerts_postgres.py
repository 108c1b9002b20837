"""Alert state, history, silences and the alert outbox in PostgreSQL (see alerts.py),
for several nodes on one database: a transition one node makes (fired, resolved) is
not made, nor notified, again by another."""

from __future__ import annotations

import json
from typing import Any

from skiff.store.alerts import (
    ALERT_COLUMNS,
    FIRING,
    ORDER,
    OUTBOX_COLUMNS,
    AlertRow,
    AlertRows,
    Firing,
    OutboxRow,
    SilenceRow,
    event_of,
    outbox_of,
    row_of,
    silence_of,
)

_EVENT = "INSERT INTO alert_events (key, event, at, actor, detail) VALUES (%s, %s, %s, %s, %s)"


class PostgresAlertRows(AlertRows):
    def __init__(self, db: Any) -> None:
        """``db``: a :class:`skiff.store.postgres.PostgresDatabase`."""
        self.db = db

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.db.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def fire(self, f: Firing, now: float, silenced: bool) -> int | None:
        with self.db.transaction() as conn:
            # the row lock serializes two nodes firing one alert: one makes the episode
            conn.execute("INSERT INTO alerts VALUES (%s, %s, %s, %s, 'resolved', '', 0, 0, 0, "
                         "%s, %s, NULL, NULL, NULL, FALSE) ON CONFLICT (key) DO NOTHING",
                         (f.key, f.rule, f.subject, f.severity, now, now))
            state, episode = conn.execute("SELECT state, episode FROM alerts WHERE key = %s "
                                          "FOR UPDATE", (f.key,)).fetchone()
            if state == FIRING:
                conn.execute("UPDATE alerts SET summary = %s, value = %s, threshold = %s, "
                             "severity = %s, updated = %s WHERE key = %s",
                             (f.summary, f.value, f.threshold, f.severity, now, f.key))
                return None
            conn.execute("UPDATE alerts SET rule = %s, subject = %s, severity = %s, "
                         "state = 'firing', summary = %s, value = %s, threshold = %s, "
                         "episode = %s, started = %s, updated = %s, resolved = NULL, "
                         "acked_by = NULL, acked_at = NULL, silenced = %s WHERE key = %s",
                         (f.rule, f.subject, f.severity, f.summary, f.value, f.threshold,
                          episode + 1, now, now, silenced, f.key))
            conn.execute(_EVENT, (f.key, "fired", now, "",
                                  f.summary + (" (silenced)" if silenced else "")))
            return episode + 1

    def resolve(self, key: str, now: float) -> AlertRow | None:
        with self.db.transaction() as conn:
            row = conn.execute(f"UPDATE alerts SET state = 'resolved', resolved = %s, "
                               f"updated = %s WHERE key = %s AND state = 'firing' "
                               f"RETURNING {ALERT_COLUMNS}", (now, now, key)).fetchone()
            if row is None:
                return None
            conn.execute(_EVENT, (key, "resolved", now, "", ""))
            return row_of(row)

    def ack(self, key: str, who: str, now: float) -> AlertRow | None:
        with self.db.transaction() as conn:
            row = conn.execute(f"UPDATE alerts SET acked_by = %s, acked_at = %s "
                               f"WHERE key = %s AND state = 'firing' RETURNING {ALERT_COLUMNS}",
                               (who, now, key)).fetchone()
            if row is None:
                return None
            conn.execute(_EVENT, (key, "acked", now, who, ""))
            return row_of(row)

    def alert(self, key: str) -> AlertRow | None:
        rows = self._read(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE key = %s AND episode > 0",
                          (key,))
        return row_of(rows[0]) if rows else None

    def alerts(self, state: str | None = None) -> list[AlertRow]:
        where, args = ("AND state = %s", (state,)) if state else ("", ())
        return [row_of(r) for r in self._read(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE episode > 0 {where} {ORDER}", args)]

    def history(self, limit: int = 100, key: str | None = None) -> list[dict]:
        where, args = ("WHERE key = %s", (key, limit)) if key else ("", (limit,))
        return [event_of(r) for r in self._read(
            f"SELECT seq, key, event, at, actor, detail FROM alert_events {where} "
            "ORDER BY seq DESC LIMIT %s", args)]

    def add_event(self, key: str, event: str, now: float, actor: str = "",
                  detail: str = "") -> None:
        with self.db.connection() as conn:
            conn.execute(_EVENT, (key, event, now, actor, detail))

    def put_silence(self, row: SilenceRow) -> None:
        with self.db.connection() as conn:
            conn.execute("INSERT INTO alert_silences VALUES (%s, %s, %s, %s, %s, %s) "
                         "ON CONFLICT (id) DO UPDATE SET matchers = excluded.matchers, "
                         "until = excluded.until, comment = excluded.comment",
                         (row.id, json.dumps(row.matchers, sort_keys=True), row.until,
                          row.created, row.created_by, row.comment))

    def silences(self) -> list[SilenceRow]:
        return [silence_of(r) for r in self._read(
            "SELECT id, matchers, until, created, created_by, comment FROM alert_silences "
            "ORDER BY until, id")]

    def drop_silence(self, id: str) -> bool:
        with self.db.connection() as conn:
            return conn.execute("DELETE FROM alert_silences WHERE id = %s",
                                (id,)).rowcount == 1

    def enqueue(self, key: str, channel: str, payload: str, now: float) -> int:
        with self.db.connection() as conn:
            return conn.execute(
                "INSERT INTO alert_outbox (key, channel, payload, created, attempts, next_at, "
                "error) VALUES (%s, %s, %s, %s, 0, %s, '') RETURNING id",
                (key, channel, payload, now, now)).fetchone()[0]

    def due(self, now: float, limit: int) -> list[OutboxRow]:
        return [OutboxRow(*r) for r in self._read(
            "SELECT id, channel, payload, attempts, next_at FROM alert_outbox "
            "WHERE delivered IS NULL AND next_at <= %s ORDER BY id LIMIT %s", (now, limit))]

    def delivered(self, id: int, now: float) -> None:
        with self.db.connection() as conn:
            conn.execute("UPDATE alert_outbox SET delivered = %s, attempts = attempts + 1, "
                         "error = '' WHERE id = %s", (now, id))

    def retry(self, id: int, next_at: float, error: str) -> None:
        with self.db.connection() as conn:
            conn.execute("UPDATE alert_outbox SET next_at = %s, attempts = attempts + 1, "
                         "error = %s WHERE id = %s", (next_at, error[:500], id))

    def outbox(self, limit: int = 100) -> list[dict]:
        return [outbox_of(r) for r in self._read(
            f"SELECT {OUTBOX_COLUMNS} FROM alert_outbox ORDER BY id DESC LIMIT %s", (limit,))]
