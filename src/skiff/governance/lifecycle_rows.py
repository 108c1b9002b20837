"""The lifecycle storage interface: each app's TTL clock and the reminders it got,
what is archived, and the outbox of notifications still to deliver.

Primitives only; :class:`skiff.governance.lifecycle.Lifecycle` owns the logic
(when a reminder is due, backoff, expiry). :meth:`LifecycleRows.claim_reminder`
is a compare-and-set, so several nodes sharing a database send each reminder
once. :class:`SQLiteLifecycleRows` (``governance.db``) and
:class:`skiff.governance.lifecycle_rows_postgres.PostgresLifecycleRows`;
tests/governance/test_lifecycle_rows_contract.py is the contract of both.
"""

from __future__ import annotations

import abc
import os
import sqlite3
from dataclasses import dataclass

from skiff.governance.identity_rows import SQLiteFile
from skiff.notify import OutboxRow


@dataclass(frozen=True, slots=True)
class ClockRow:
    app: str
    base: float  # the last deploy or renewal (unix time)
    days: int | None  # a renewal's days; None: the manifest's ttlDays or the default
    reminded: tuple[int, ...]  # the reminders (days before expiry) sent since ``base``


@dataclass(frozen=True, slots=True)
class ArchiveRow:
    app: str
    path: str  # the archive file
    archived: float
    reason: str  # "expired" or "removed"
    routes: tuple[tuple[str | None, str], ...]  # (host, path) it served: they answer 410


class LifecycleRows(abc.ABC):
    """Thread-safe, and safe across processes sharing the storage."""

    @abc.abstractmethod
    def start_clock(self, app: str, base: float, days: int | None) -> None:
        """(Re)start the app's TTL at ``base``: a deploy or renewal; reminders start over."""

    @abc.abstractmethod
    def clock(self, app: str) -> ClockRow | None: ...

    @abc.abstractmethod
    def clocks(self) -> list[ClockRow]: ...

    @abc.abstractmethod
    def claim_reminder(self, app: str, base: float, days: tuple[int, ...]) -> bool:
        """Mark the reminders ``days`` sent for the clock started at ``base``; False when
        any of them was claimed already, or the clock was restarted since."""

    @abc.abstractmethod
    def drop_clock(self, app: str) -> None: ...

    @abc.abstractmethod
    def put_archive(self, row: ArchiveRow) -> None:
        """The app's newest archive (replaces an older one's row)."""

    @abc.abstractmethod
    def archive(self, app: str) -> ArchiveRow | None: ...

    @abc.abstractmethod
    def archives(self) -> list[ArchiveRow]: ...

    @abc.abstractmethod
    def drop_archive(self, app: str) -> bool: ...

    @abc.abstractmethod
    def enqueue(self, channel: str, payload: str, now: float) -> int: ...

    @abc.abstractmethod
    def due(self, now: float, limit: int) -> list[OutboxRow]:
        """Undelivered notifications whose time has come, oldest first."""

    @abc.abstractmethod
    def delivered(self, id: int, now: float) -> None: ...

    @abc.abstractmethod
    def retry(self, id: int, next_at: float, error: str) -> None: ...

    @abc.abstractmethod
    def outbox(self) -> list[dict]:
        """Every notification (delivered or not), for operators and tests."""

    def close(self) -> None:  # noqa: B027 - a backend without resources needs nothing
        """Release the backend's resources."""


def encode_routes(routes: tuple[tuple[str | None, str], ...]) -> str:
    return "\n".join(f"{h or ''}\t{p}" for h, p in routes)


def decode_routes(text: str) -> tuple[tuple[str | None, str], ...]:
    out = []
    for line in text.splitlines():
        host, _, path = line.partition("\t")
        out.append((host or None, path))
    return tuple(out)


def encode_days(days: tuple[int, ...]) -> str:
    return ",".join(str(d) for d in sorted(set(days)))


def decode_days(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in text.split(",") if d)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS gov_ttl (
  app TEXT PRIMARY KEY, base REAL NOT NULL, days INTEGER, reminded TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gov_archives (
  app TEXT PRIMARY KEY, path TEXT NOT NULL, archived REAL NOT NULL, reason TEXT NOT NULL,
  routes TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gov_outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, payload TEXT NOT NULL,
  created REAL NOT NULL, attempts INTEGER NOT NULL, next_at REAL NOT NULL,
  delivered REAL, error TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS gov_outbox_due ON gov_outbox (next_at) WHERE delivered IS NULL;
"""


class SQLiteLifecycleRows(LifecycleRows):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._f = SQLiteFile(path)
        self._f.write(lambda db: [db.execute(s) for s in _SCHEMA.split(";") if s.strip()])

    def start_clock(self, app: str, base: float, days: int | None) -> None:
        self._f.write(lambda db: db.execute(
            "INSERT INTO gov_ttl VALUES (?, ?, ?, '') ON CONFLICT (app) DO UPDATE SET "
            "base = excluded.base, days = excluded.days, reminded = ''", (app, base, days)))

    def clock(self, app: str) -> ClockRow | None:
        rows = self._f.read("SELECT app, base, days, reminded FROM gov_ttl WHERE app = ?", (app,))
        return _clock(rows[0]) if rows else None

    def clocks(self) -> list[ClockRow]:
        return [_clock(r) for r in self._f.read(
            "SELECT app, base, days, reminded FROM gov_ttl ORDER BY app")]

    def claim_reminder(self, app: str, base: float, days: tuple[int, ...]) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT reminded FROM gov_ttl WHERE app = ? AND base = ?",
                             (app, base)).fetchone()
            if row is None or set(days) & set(decode_days(row[0])):
                return False
            db.execute("UPDATE gov_ttl SET reminded = ? WHERE app = ?",
                       (encode_days(decode_days(row[0]) + days), app))
            return True
        return self._f.write(work)  # type: ignore[return-value]

    def drop_clock(self, app: str) -> None:
        self._f.write(lambda db: db.execute("DELETE FROM gov_ttl WHERE app = ?", (app,)))

    def put_archive(self, row: ArchiveRow) -> None:
        self._f.write(lambda db: db.execute(
            "INSERT OR REPLACE INTO gov_archives VALUES (?, ?, ?, ?, ?)",
            (row.app, row.path, row.archived, row.reason, encode_routes(row.routes))))

    def archive(self, app: str) -> ArchiveRow | None:
        rows = self._f.read("SELECT * FROM gov_archives WHERE app = ?", (app,))
        return _archive(rows[0]) if rows else None

    def archives(self) -> list[ArchiveRow]:
        return [_archive(r) for r in self._f.read("SELECT * FROM gov_archives ORDER BY app")]

    def drop_archive(self, app: str) -> bool:
        return self._f.write(lambda db: db.execute(  # type: ignore[return-value]
            "DELETE FROM gov_archives WHERE app = ?", (app,)).rowcount == 1)

    def enqueue(self, channel: str, payload: str, now: float) -> int:
        return self._f.write(lambda db: db.execute(  # type: ignore[return-value]
            "INSERT INTO gov_outbox (channel, payload, created, attempts, next_at, error) "
            "VALUES (?, ?, ?, 0, ?, '')", (channel, payload, now, now)).lastrowid)

    def due(self, now: float, limit: int) -> list[OutboxRow]:
        return [OutboxRow(*r) for r in self._f.read(
            "SELECT id, channel, payload, attempts, next_at FROM gov_outbox "
            "WHERE delivered IS NULL AND next_at <= ? ORDER BY id LIMIT ?", (now, limit))]

    def delivered(self, id: int, now: float) -> None:
        self._f.write(lambda db: db.execute(
            "UPDATE gov_outbox SET delivered = ?, attempts = attempts + 1, error = '' "
            "WHERE id = ?", (now, id)))

    def retry(self, id: int, next_at: float, error: str) -> None:
        self._f.write(lambda db: db.execute(
            "UPDATE gov_outbox SET next_at = ?, attempts = attempts + 1, error = ? "
            "WHERE id = ?", (next_at, error[:500], id)))

    def outbox(self) -> list[dict]:
        return [_outbox(r) for r in self._f.read(
            "SELECT id, channel, payload, created, attempts, next_at, delivered, error "
            "FROM gov_outbox ORDER BY id")]

    def close(self) -> None:
        self._f.close()


def _clock(r: tuple) -> ClockRow:
    return ClockRow(r[0], r[1], r[2], decode_days(r[3]))


def _archive(r: tuple) -> ArchiveRow:
    return ArchiveRow(r[0], r[1], r[2], r[3], decode_routes(r[4]))


def _outbox(r: tuple) -> dict:
    return {"id": r[0], "channel": r[1], "payload": r[2], "created": r[3], "attempts": r[4],
            "next_at": r[5], "delivered": r[6], "error": r[7]}
