"""The embedded durable broker: one SQLite file in WAL mode.

A lease is an UPDATE of ``visible_at`` (the lease expiry) and ``receipt`` in
the same ``BEGIN IMMEDIATE`` transaction as the SELECT that found the rows, so
two receivers (threads or processes) never lease the same message. The index
``(queue, visible_at, seq)`` makes that SELECT a range scan whatever the
backlog, and ``MIN(visible_at)`` (how long a consumer may sleep) one lookup.

With ``durable=True`` (the default) the WAL is fsynced at every commit
(``synchronous=FULL``), so a message whose ``send`` returned survives a power
cut, not only a ``kill -9``. ``durable=False`` (``synchronous=NORMAL``) still
survives a crash of the process, and may lose the last commits when the
machine itself goes down; it is several times faster.

Several processes may share the file (each with its own ``SQLiteBroker``);
wake-ups are in-process only, so a consumer sees another process's sends
within ``poll_interval``. Open the broker after forking, never before.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from skiff.bus.broker import (
    MAX_BODY_BYTES,
    Broker,
    Clock,
    Delivery,
    Message,
    NewMessage,
    QueueStats,
    RedrivePolicy,
    new_receipt,
)
from skiff.store.sqlite import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bus_messages (
  seq INTEGER PRIMARY KEY,
  queue TEXT NOT NULL,
  message_id TEXT NOT NULL,
  body BLOB NOT NULL,
  attributes TEXT NOT NULL,
  sent_at REAL NOT NULL,
  visible_at REAL NOT NULL,
  receive_count INTEGER NOT NULL DEFAULT 0,
  first_received_at REAL,
  receipt TEXT,
  source_queue TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS bus_messages_id ON bus_messages (queue, message_id);
CREATE INDEX IF NOT EXISTS bus_messages_ready ON bus_messages (queue, visible_at, seq);
CREATE TABLE IF NOT EXISTS bus_queues (
  name TEXT PRIMARY KEY,
  dead_letter_queue TEXT,
  max_receive_count INTEGER
);
"""

_COLUMNS = ("queue, message_id, body, attributes, sent_at, visible_at, receive_count, "
            "first_received_at, receipt, source_queue")


class SQLiteBroker(Broker):
    blocking_io = True

    def __init__(self, path: str | Path, *, durable: bool = True, clock: Clock = time.time,
                 max_body_bytes: int = MAX_BODY_BYTES, poll_interval: float = 1.0,
                 exclusive: bool = False) -> None:
        super().__init__(clock=clock, max_body_bytes=max_body_bytes, poll_interval=poll_interval)
        self.path = Path(path)
        self.durable = durable
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._db = connect(self.path, durable=durable, schema=_SCHEMA, exclusive=exclusive)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _register(self, db: sqlite3.Connection, queue: str) -> None:
        if queue not in self._known:
            db.execute("INSERT OR IGNORE INTO bus_queues (name) VALUES (?)", (queue,))
            self._known.add(queue)

    def _insert(self, batches: dict[str, list[NewMessage]]) -> None:
        with self._tx() as db:
            for queue in batches:
                self._register(db, queue)
            db.executemany(
                "INSERT OR IGNORE INTO bus_messages (queue, message_id, body, attributes, "
                "sent_at, visible_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(queue, m.message_id, m.body, _dump(m.attributes), m.sent_at, m.visible_at)
                 for queue, rows in batches.items() for m in rows])

    def _lease(self, queue: str, limit: int, visibility_timeout: float,
               now: float) -> tuple[list[Delivery], set[str]]:
        out: list[Delivery] = []
        moved: set[str] = set()
        with self._tx() as db:
            policy = _policy(db, queue)
            leased: set[int] = set()  # with visibility_timeout=0 they stay selectable
            while len(out) < limit:
                rows = [row for row in db.execute(
                    "SELECT seq, message_id, body, attributes, sent_at, receive_count, "
                    "first_received_at FROM bus_messages WHERE queue = ? AND visible_at <= ? "
                    "ORDER BY visible_at, seq LIMIT ?", (queue, now, limit - len(out) + len(leased)))
                    if row[0] not in leased][:limit - len(out)]
                if not rows:
                    break
                leases = []
                for seq, message_id, body, attributes, sent_at, count, first in rows:
                    if policy is not None and count >= policy.max_receive_count:
                        self._register(db, policy.dead_letter_queue)
                        db.execute(
                            "UPDATE OR REPLACE bus_messages SET queue = ?, source_queue = ?, "
                            "receipt = NULL, visible_at = ? WHERE seq = ?",
                            (policy.dead_letter_queue, queue, now, seq))
                        moved.add(policy.dead_letter_queue)
                        continue
                    receipt = new_receipt(seq)
                    first = now if first is None else first
                    leased.add(seq)
                    leases.append((receipt, now + visibility_timeout, first, seq))
                    out.append(Delivery(queue, message_id, body, json.loads(attributes), receipt,
                                        count + 1, sent_at, first))
                db.executemany(
                    "UPDATE bus_messages SET receipt = ?, visible_at = ?, "
                    "receive_count = receive_count + 1, first_received_at = ? WHERE seq = ?",
                    leases)
        return out, moved

    def _delete(self, queue: str, leases: list[tuple[int, str]]) -> int:
        with self._tx() as db:
            before = db.total_changes
            db.executemany("DELETE FROM bus_messages WHERE seq = ? AND receipt = ? AND queue = ?",
                           [(seq, receipt, queue) for seq, receipt in leases])
            return db.total_changes - before

    def _release(self, queue: str, seq: int, receipt: str, visible_at: float) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE bus_messages SET receipt = NULL, visible_at = ? "
                             "WHERE seq = ? AND receipt = ? AND queue = ?",
                             (visible_at, seq, receipt, queue))
            return cur.rowcount == 1

    def _next_visible_at(self, queue: str) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(visible_at) FROM bus_messages WHERE queue = ?",
                                   (queue,)).fetchone()
        return row[0]

    def _set_policy(self, queue: str, policy: RedrivePolicy | None) -> None:
        with self._tx() as db:
            self._register(db, queue)
            if policy is not None:
                self._register(db, policy.dead_letter_queue)
            db.execute("UPDATE bus_queues SET dead_letter_queue = ?, max_receive_count = ? "
                       "WHERE name = ?",
                       (policy and policy.dead_letter_queue, policy and policy.max_receive_count,
                        queue))

    def _stats(self, now: float) -> list[QueueStats]:
        with self._lock:
            counts = {name: (visible, in_flight, delayed) for name, visible, in_flight, delayed
                      in self._db.execute(
                          "SELECT queue, SUM(visible_at <= ?1), "
                          "SUM(visible_at > ?1 AND receipt IS NOT NULL), "
                          "SUM(visible_at > ?1 AND receipt IS NULL) "
                          "FROM bus_messages GROUP BY queue", (now,))}
            queues = self._db.execute(
                "SELECT name, dead_letter_queue, max_receive_count FROM bus_queues").fetchall()
        names = {name: (dlq, mrc) for name, dlq, mrc in queues}
        return [QueueStats(name, *counts.get(name, (0, 0, 0)), *names.get(name, (None, None)))
                for name in names.keys() | counts.keys()]

    def _peek(self, queue: str, limit: int, now: float) -> list[Message]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM bus_messages WHERE queue = ? "
                "ORDER BY visible_at, seq LIMIT ?", (queue, limit)).fetchall()
        return [Message(q, mid, body, json.loads(attrs), sent_at, visible_at, count, first,
                        source, receipt is not None and visible_at > now)
                for q, mid, body, attrs, sent_at, visible_at, count, first, receipt, source
                in rows]

    def release_leases(self) -> int:
        with self._tx() as db:
            # the queues holding leases, not only those named in this process so far: a
            # consumer of any of them sleeps until its next visible time otherwise
            leased = [q for (q,) in db.execute("SELECT DISTINCT queue FROM bus_messages "
                                               "WHERE receipt IS NOT NULL")]
            released = db.execute("UPDATE bus_messages SET receipt = NULL, visible_at = ? "
                                  "WHERE receipt IS NOT NULL", (self.clock(),)).rowcount
        for name in sorted(set(leased) | self._known):
            self.signals.notify(name)
        return released

    def _purge(self, queue: str) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM bus_messages WHERE queue = ?", (queue,)).rowcount

    def _drop_queue(self, queue: str) -> int:
        with self._tx() as db:
            removed = db.execute("DELETE FROM bus_messages WHERE queue = ?", (queue,)).rowcount
            db.execute("DELETE FROM bus_queues WHERE name = ?", (queue,))
            self._known.discard(queue)
        return removed

    def _redrive(self, dlq: str, to_queue: str | None, now: float) -> dict[str, int]:
        moved: dict[str, int] = {}
        with self._tx() as db:
            rows = db.execute(
                "SELECT seq, source_queue FROM bus_messages WHERE queue = ? "
                "AND NOT (receipt IS NOT NULL AND visible_at > ?) ORDER BY seq",
                (dlq, now)).fetchall()
            for seq, source in rows:
                target = to_queue or source
                if target is None:
                    continue
                self._register(db, target)
                db.execute("UPDATE OR REPLACE bus_messages SET queue = ?, source_queue = NULL, "
                           "receipt = NULL, receive_count = 0, first_received_at = NULL, "
                           "visible_at = ? WHERE seq = ?", (target, now, seq))
                moved[target] = moved.get(target, 0) + 1
        return moved


def _policy(db: sqlite3.Connection, queue: str) -> RedrivePolicy | None:
    row = db.execute("SELECT dead_letter_queue, max_receive_count FROM bus_queues "
                     "WHERE name = ?", (queue,)).fetchone()
    if row is None or row[0] is None:
        return None
    return RedrivePolicy(row[0], row[1])


def _dump(attributes: dict[str, str]) -> str:
    return json.dumps(attributes, separators=(",", ":")) if attributes else "{}"
