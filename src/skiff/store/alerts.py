"""The alert storage interface: each alert's state (firing or resolved, acknowledged),
its history, silences, and the outbox of its notifications.

Primitives only; :class:`skiff.observe.alerts.Alerting` owns the logic (what
fires, who is told, silences, backoff). :meth:`AlertRows.fire` and
:meth:`AlertRows.resolve` are compare-and-set transitions: of several nodes
evaluating one database, one wins each transition, so each episode is notified
once. :class:`SQLiteAlertRows` (``alerts.db``) and
:class:`skiff.store.alerts_postgres.PostgresAlertRows`;
tests/store/test_alert_rows_contract.py is the contract of both.
"""

from __future__ import annotations

import abc
import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiff.notify import OutboxRow

__all__ = ["FIRING", "RESOLVED", "AlertRow", "AlertRows", "Firing", "OutboxRow", "SilenceRow",
           "SQLiteAlertRows"]

FIRING, RESOLVED = "firing", "resolved"


@dataclass(frozen=True, slots=True)
class AlertRow:
    key: str  # rule:subject
    rule: str
    subject: str  # the app or queue
    severity: str
    state: str  # FIRING or RESOLVED
    summary: str
    value: float
    threshold: float
    episode: int  # 1 for its first firing, 2 for the next...
    started: float  # when this episode fired
    updated: float
    resolved: float | None
    acked_by: str | None
    acked_at: float | None
    silenced: bool  # a silence matched when this episode fired: nobody was told

    def to_dict(self) -> dict:
        return {"id": self.key, "rule": self.rule, "subject": self.subject,
                "severity": self.severity, "state": self.state, "summary": self.summary,
                "value": self.value, "threshold": self.threshold, "episode": self.episode,
                "started": self.started, "updated": self.updated, "resolved": self.resolved,
                "acked_by": self.acked_by, "acked_at": self.acked_at,
                "silenced": self.silenced}


@dataclass(frozen=True, slots=True)
class SilenceRow:
    id: str
    matchers: dict[str, str]  # label -> value or glob (rule, subject, severity)
    until: float
    created: float
    created_by: str
    comment: str

    def to_dict(self) -> dict:
        return {"id": self.id, "matchers": self.matchers, "until": self.until,
                "created": self.created, "created_by": self.created_by,
                "comment": self.comment}


@dataclass(frozen=True, slots=True)
class Firing:
    """What an evaluation found active (skiff.observe.slo.Finding, as stored)."""

    key: str
    rule: str
    subject: str
    severity: str
    summary: str
    value: float
    threshold: float


class AlertRows(abc.ABC):
    """Thread-safe, and safe across processes sharing the storage."""

    @abc.abstractmethod
    def fire(self, f: Firing, now: float, silenced: bool) -> int | None:
        """Mark ``f`` firing: the new episode's number when it was not firing (a
        history event is written with it), else None (its figures are updated)."""

    @abc.abstractmethod
    def resolve(self, key: str, now: float) -> AlertRow | None:
        """The alert as resolved, when it was firing (else None)."""

    @abc.abstractmethod
    def ack(self, key: str, who: str, now: float) -> AlertRow | None:
        """Acknowledge the firing episode; None when the alert is not firing."""

    @abc.abstractmethod
    def alert(self, key: str) -> AlertRow | None: ...

    @abc.abstractmethod
    def alerts(self, state: str | None = None) -> list[AlertRow]:
        """Firing first, then the newest."""

    @abc.abstractmethod
    def history(self, limit: int = 100, key: str | None = None) -> list[dict]:
        """Events (fired, resolved, acked, silence_*), newest first."""

    @abc.abstractmethod
    def add_event(self, key: str, event: str, now: float, actor: str = "",
                  detail: str = "") -> None: ...

    @abc.abstractmethod
    def put_silence(self, row: SilenceRow) -> None: ...

    @abc.abstractmethod
    def silences(self) -> list[SilenceRow]: ...

    @abc.abstractmethod
    def drop_silence(self, id: str) -> bool: ...

    @abc.abstractmethod
    def enqueue(self, key: str, channel: str, payload: str, now: float) -> int: ...

    @abc.abstractmethod
    def due(self, now: float, limit: int) -> list[OutboxRow]: ...

    @abc.abstractmethod
    def delivered(self, id: int, now: float) -> None: ...

    @abc.abstractmethod
    def retry(self, id: int, next_at: float, error: str) -> None: ...

    @abc.abstractmethod
    def outbox(self, limit: int = 100) -> list[dict]:
        """The newest notifications, delivered or not."""

    def close(self) -> None:  # noqa: B027 - a backend without resources needs nothing
        """Release the backend's resources."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
  key TEXT PRIMARY KEY, rule TEXT NOT NULL, subject TEXT NOT NULL, severity TEXT NOT NULL,
  state TEXT NOT NULL, summary TEXT NOT NULL, value REAL NOT NULL, threshold REAL NOT NULL,
  episode INTEGER NOT NULL, started REAL NOT NULL, updated REAL NOT NULL, resolved REAL,
  acked_by TEXT, acked_at REAL, silenced INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alert_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, event TEXT NOT NULL,
  at REAL NOT NULL, actor TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alert_silences (
  id TEXT PRIMARY KEY, matchers TEXT NOT NULL, until REAL NOT NULL, created REAL NOT NULL,
  created_by TEXT NOT NULL, comment TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alert_outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, channel TEXT NOT NULL,
  payload TEXT NOT NULL, created REAL NOT NULL, attempts INTEGER NOT NULL,
  next_at REAL NOT NULL, delivered REAL, error TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox (next_at) WHERE delivered IS NULL;
"""

ALERT_COLUMNS = ("key, rule, subject, severity, state, summary, value, threshold, episode, "
                 "started, updated, resolved, acked_by, acked_at, silenced")
ORDER = "ORDER BY (state = 'firing') DESC, updated DESC, key"
OUTBOX_COLUMNS = "id, key, channel, payload, created, attempts, next_at, delivered, error"


def row_of(r: tuple) -> AlertRow:
    return AlertRow(*r[:14], bool(r[14]))


def silence_of(r: tuple) -> SilenceRow:
    return SilenceRow(r[0], json.loads(r[1]), r[2], r[3], r[4], r[5])


def event_of(r: tuple) -> dict:
    return {"seq": r[0], "id": r[1], "event": r[2], "at": r[3], "actor": r[4], "detail": r[5]}


def outbox_of(r: tuple) -> dict:
    return {"id": r[0], "alert": r[1], "channel": r[2], "payload": r[3], "created": r[4],
            "attempts": r[5], "next_at": r[6], "delivered": r[7], "error": r[8]}


class SQLiteAlertRows(AlertRows):
    """``alerts.db`` beside the platform's database (one node owns the file)."""

    def __init__(self, path: str | Path) -> None:
        from skiff.store.sqlite import connect

        self._lock = threading.Lock()
        self._db = connect(path, schema=_SCHEMA)

    def _write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = work(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return out

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def fire(self, f: Firing, now: float, silenced: bool) -> int | None:
        def work(db: sqlite3.Connection) -> int | None:
            row = db.execute("SELECT state, episode FROM alerts WHERE key = ?",
                             (f.key,)).fetchone()
            if row is not None and row[0] == FIRING:
                db.execute("UPDATE alerts SET summary = ?, value = ?, threshold = ?, "
                           "severity = ?, updated = ? WHERE key = ?",
                           (f.summary, f.value, f.threshold, f.severity, now, f.key))
                return None
            episode = (row[1] if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO alerts VALUES "
                       "(?, ?, ?, ?, 'firing', ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?)",
                       (f.key, f.rule, f.subject, f.severity, f.summary, f.value, f.threshold,
                        episode, now, now, int(silenced)))
            db.execute("INSERT INTO alert_events (key, event, at, actor, detail) "
                       "VALUES (?, 'fired', ?, '', ?)",
                       (f.key, now, f.summary + (" (silenced)" if silenced else "")))
            return episode
        return self._write(work)

    def resolve(self, key: str, now: float) -> AlertRow | None:
        def work(db: sqlite3.Connection) -> AlertRow | None:
            if db.execute("UPDATE alerts SET state = 'resolved', resolved = ?, updated = ? "
                          "WHERE key = ? AND state = 'firing'", (now, now, key)).rowcount != 1:
                return None
            db.execute("INSERT INTO alert_events (key, event, at, actor, detail) "
                       "VALUES (?, 'resolved', ?, '', '')", (key, now))
            return row_of(db.execute(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE key = ?",
                                     (key,)).fetchone())
        return self._write(work)

    def ack(self, key: str, who: str, now: float) -> AlertRow | None:
        def work(db: sqlite3.Connection) -> AlertRow | None:
            if db.execute("UPDATE alerts SET acked_by = ?, acked_at = ? "
                          "WHERE key = ? AND state = 'firing'", (who, now, key)).rowcount != 1:
                return None
            db.execute("INSERT INTO alert_events (key, event, at, actor, detail) "
                       "VALUES (?, 'acked', ?, ?, '')", (key, now, who))
            return row_of(db.execute(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE key = ?",
                                     (key,)).fetchone())
        return self._write(work)

    def alert(self, key: str) -> AlertRow | None:
        rows = self._read(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE key = ?", (key,))
        return row_of(rows[0]) if rows else None

    def alerts(self, state: str | None = None) -> list[AlertRow]:
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        return [row_of(r) for r in self._read(
            f"SELECT {ALERT_COLUMNS} FROM alerts {where} {ORDER}", args)]

    def history(self, limit: int = 100, key: str | None = None) -> list[dict]:
        where, args = ("WHERE key = ?", (key, limit)) if key else ("", (limit,))
        return [event_of(r) for r in self._read(
            f"SELECT seq, key, event, at, actor, detail FROM alert_events {where} "
            "ORDER BY seq DESC LIMIT ?", args)]

    def add_event(self, key: str, event: str, now: float, actor: str = "",
                  detail: str = "") -> None:
        self._write(lambda db: db.execute(
            "INSERT INTO alert_events (key, event, at, actor, detail) VALUES (?, ?, ?, ?, ?)",
            (key, event, now, actor, detail)))

    def put_silence(self, row: SilenceRow) -> None:
        self._write(lambda db: db.execute(
            "INSERT OR REPLACE INTO alert_silences VALUES (?, ?, ?, ?, ?, ?)",
            (row.id, json.dumps(row.matchers, sort_keys=True), row.until, row.created,
             row.created_by, row.comment)))

    def silences(self) -> list[SilenceRow]:
        return [silence_of(r) for r in self._read(
            "SELECT * FROM alert_silences ORDER BY until, id")]

    def drop_silence(self, id: str) -> bool:
        return self._write(lambda db: db.execute(
            "DELETE FROM alert_silences WHERE id = ?", (id,)).rowcount == 1)

    def enqueue(self, key: str, channel: str, payload: str, now: float) -> int:
        return self._write(lambda db: db.execute(
            "INSERT INTO alert_outbox (key, channel, payload, created, attempts, next_at, "
            "error) VALUES (?, ?, ?, ?, 0, ?, '')", (key, channel, payload, now, now)).lastrowid)

    def due(self, now: float, limit: int) -> list[OutboxRow]:
        return [OutboxRow(*r) for r in self._read(
            "SELECT id, channel, payload, attempts, next_at FROM alert_outbox "
            "WHERE delivered IS NULL AND next_at <= ? ORDER BY id LIMIT ?", (now, limit))]

    def delivered(self, id: int, now: float) -> None:
        self._write(lambda db: db.execute(
            "UPDATE alert_outbox SET delivered = ?, attempts = attempts + 1, error = '' "
            "WHERE id = ?", (now, id)))

    def retry(self, id: int, next_at: float, error: str) -> None:
        self._write(lambda db: db.execute(
            "UPDATE alert_outbox SET next_at = ?, attempts = attempts + 1, error = ? "
            "WHERE id = ?", (next_at, error[:500], id)))

    def outbox(self, limit: int = 100) -> list[dict]:
        return [outbox_of(r) for r in self._read(
            f"SELECT {OUTBOX_COLUMNS} FROM alert_outbox ORDER BY id DESC LIMIT ?", (limit,))]

    def close(self) -> None:
        with self._lock:
            self._db.close()
