"""The shared broker: queues in PostgreSQL, for several nodes at once.

A lease is ``SELECT ... FOR UPDATE SKIP LOCKED`` and an UPDATE of
``visible_at`` and ``receipt`` in one transaction, a batch at a time: two
nodes receiving from the same queue skip each other's locked rows instead of
waiting on them, and never lease the same message. The index
``(queue, visible_at, seq)`` keeps that SELECT a range scan.

Wake-ups cross nodes: every commit that may make a message visible sends
``NOTIFY`` on :data:`CHANNEL` with the queue name (delivered at commit), and
one listener thread per broker turns those into the base class's in-process
signals, so a consumer on another node wakes at once instead of at its next
poll. Notifications sent while the listener was reconnecting are lost, and the
dispatcher does not poll: after every LISTEN the listener signals each queue that
holds messages, so work committed meanwhile is not left waiting.

Unlike the SQLite broker, :meth:`release_leases` does nothing: the database
is shared, and another node's leases are alive.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

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
from skiff.store.postgres import PostgresDatabase

#: The NOTIFY channel of queue wake-ups; the payload is the queue name.
CHANNEL = "skiff_bus"
#: How often the listener thread checks that it should still run (close waits for it).
_LISTEN_TICK = 0.2

_COLUMNS = ("queue, message_id, body, attributes, sent_at, visible_at, receive_count, "
            "first_received_at, receipt, source_queue")


class PostgresBroker(Broker):
    blocking_io = True

    def __init__(self, db: PostgresDatabase, *, clock: Clock = time.time,
                 max_body_bytes: int = MAX_BODY_BYTES, poll_interval: float = 1.0,
                 listen: bool = True) -> None:
        super().__init__(clock=clock, max_body_bytes=max_body_bytes, poll_interval=poll_interval)
        self.db = db
        self._known: set[str] = set()
        #: Server pids of the connections this broker notified from: their
        #: NOTIFYs come back to the listener, and the base class has already
        #: signalled those commits locally (listeners hear each commit once).
        self._own_pids: set[int] = set()
        self._closing = threading.Event()
        #: Set while the listener's LISTEN is in place (tests wait on it).
        self.listening = threading.Event()
        self._listener: threading.Thread | None = None
        if listen:
            self._listener = threading.Thread(target=self._listen, name="skiff-bus-listen",
                                              daemon=True)
            self._listener.start()

    def close(self) -> None:
        self._closing.set()
        if self._listener is not None:
            self._listener.join()

    # -- cross-node wake-ups ----------------------------------------------------------
    def _listen(self) -> None:
        while not self._closing.is_set():
            try:
                conn = self.db.connect()
            except Exception:  # the database is away: polling still works; retry
                self._closing.wait(self.poll_interval)
                continue
            try:
                conn.execute(f"LISTEN {CHANNEL}")
                # what was committed while no LISTEN was in place sent its NOTIFY to no one
                for (queue,) in conn.execute("SELECT DISTINCT queue FROM bus_messages").fetchall():
                    self.signals.notify(queue)
                self.listening.set()
                while not self._closing.is_set():
                    for note in conn.notifies(timeout=_LISTEN_TICK):
                        if note.pid not in self._own_pids:
                            self.signals.notify(note.payload)
            except Exception:
                self._closing.wait(self.poll_interval)
            finally:
                self.listening.clear()
                conn.close()

    def _notify(self, conn: Any, queues: set[str] | list[str]) -> None:
        if queues:
            self._own_pids.add(conn.info.backend_pid)
        for queue in queues:
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, queue))

    def _register(self, conn: Any, queue: str) -> None:
        if queue not in self._known:
            conn.execute("INSERT INTO bus_queues (name) VALUES (%s) ON CONFLICT DO NOTHING",
                         (queue,))
            self._known.add(queue)

    # -- primitives -------------------------------------------------------------------
    def _insert(self, batches: dict[str, list[NewMessage]]) -> None:
        with self.db.transaction() as conn:
            for queue in batches:
                self._register(conn, queue)
            rows = [(queue, m.message_id, m.body, _dump(m.attributes), m.sent_at, m.visible_at)
                    for queue, batch in batches.items() for m in batch]
            with conn.cursor() as cur:
                # one row (an async accept) is one execute: executemany enters psycopg's
                # pipeline mode, which was 18 % of the server's GIL time on accepts (py-spy)
                (cur.execute if len(rows) == 1 else cur.executemany)(
                    "INSERT INTO bus_messages (queue, message_id, body, attributes, sent_at, "
                    "visible_at) VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (queue, message_id) DO NOTHING",
                    rows[0] if len(rows) == 1 else rows)
            self._notify(conn, list(batches))

    def _lease(self, queue: str, limit: int, visibility_timeout: float,
               now: float) -> tuple[list[Delivery], set[str]]:
        out: list[Delivery] = []
        moved: set[str] = set()
        with self.db.transaction() as conn:
            policy = _policy(conn, queue)
            leased: list[int] = []  # with visibility_timeout=0 they stay selectable
            while len(out) < limit:
                rows = conn.execute(
                    "SELECT seq, message_id, body, attributes, sent_at, receive_count, "
                    "first_received_at FROM bus_messages WHERE queue = %s AND visible_at <= %s "
                    "AND seq <> ALL(%s) ORDER BY visible_at, seq LIMIT %s "
                    "FOR UPDATE SKIP LOCKED",
                    (queue, now, leased, limit - len(out))).fetchall()
                if not rows:
                    break
                leases = []
                for seq, message_id, body, attributes, sent_at, count, first in rows:
                    if policy is not None and count >= policy.max_receive_count:
                        self._register(conn, policy.dead_letter_queue)
                        _move(conn, seq, message_id, policy.dead_letter_queue,
                              "source_queue = %s, receipt = NULL, visible_at = %s",
                              (queue, now))
                        moved.add(policy.dead_letter_queue)
                        continue
                    receipt = new_receipt(seq)
                    first = now if first is None else first
                    leased.append(seq)
                    leases.append((receipt, now + visibility_timeout, first, seq))
                    out.append(Delivery(queue, message_id, bytes(body), json.loads(attributes),
                                        receipt, count + 1, sent_at, first))
                if leases:
                    with conn.cursor() as cur:
                        cur.executemany(
                            "UPDATE bus_messages SET receipt = %s, visible_at = %s, "
                            "receive_count = receive_count + 1, first_received_at = %s "
                            "WHERE seq = %s", leases)
            self._notify(conn, moved)
        return out, moved

    def _delete(self, queue: str, leases: list[tuple[int, str]]) -> int:
        with self.db.connection() as conn:
            cur = conn.execute(
                "DELETE FROM bus_messages m USING unnest(%s::bigint[], %s::text[]) "
                "AS l(seq, receipt) WHERE m.seq = l.seq AND m.receipt = l.receipt "
                "AND m.queue = %s",
                ([seq for seq, _ in leases], [r for _, r in leases], queue))
            return cur.rowcount

    def _release(self, queue: str, seq: int, receipt: str, visible_at: float) -> bool:
        with self.db.transaction() as conn:
            cur = conn.execute("UPDATE bus_messages SET receipt = NULL, visible_at = %s "
                               "WHERE seq = %s AND receipt = %s AND queue = %s",
                               (visible_at, seq, receipt, queue))
            if cur.rowcount == 1:
                self._notify(conn, [queue])
            return cur.rowcount == 1

    def _next_visible_at(self, queue: str) -> float | None:
        with self.db.connection() as conn:
            return conn.execute("SELECT MIN(visible_at) FROM bus_messages WHERE queue = %s",
                                (queue,)).fetchone()[0]

    def _set_policy(self, queue: str, policy: RedrivePolicy | None) -> None:
        with self.db.transaction() as conn:
            self._register(conn, queue)
            if policy is not None:
                self._register(conn, policy.dead_letter_queue)
            conn.execute("UPDATE bus_queues SET dead_letter_queue = %s, max_receive_count = %s "
                         "WHERE name = %s",
                         (policy and policy.dead_letter_queue,
                          policy and policy.max_receive_count, queue))

    def _stats(self, now: float) -> list[QueueStats]:
        with self.db.connection() as conn:
            counts = {name: (visible, in_flight, delayed) for name, visible, in_flight, delayed
                      in conn.execute(
                          "SELECT queue, COUNT(*) FILTER (WHERE visible_at <= %(now)s), "
                          "COUNT(*) FILTER (WHERE visible_at > %(now)s AND receipt IS NOT NULL), "
                          "COUNT(*) FILTER (WHERE visible_at > %(now)s AND receipt IS NULL) "
                          "FROM bus_messages GROUP BY queue", {"now": now})}
            queues = conn.execute(
                "SELECT name, dead_letter_queue, max_receive_count FROM bus_queues").fetchall()
        names = {name: (dlq, mrc) for name, dlq, mrc in queues}
        return [QueueStats(name, *counts.get(name, (0, 0, 0)), *names.get(name, (None, None)))
                for name in names.keys() | counts.keys()]

    def _peek(self, queue: str, limit: int, now: float) -> list[Message]:
        with self.db.connection() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM bus_messages WHERE queue = %s "
                "ORDER BY visible_at, seq LIMIT %s", (queue, limit)).fetchall()
        return [Message(q, mid, bytes(body), json.loads(attrs), sent_at, visible_at, count, first,
                        source, receipt is not None and visible_at > now)
                for q, mid, body, attrs, sent_at, visible_at, count, first, receipt, source
                in rows]

    def _purge(self, queue: str) -> int:
        with self.db.connection() as conn:
            return conn.execute("DELETE FROM bus_messages WHERE queue = %s", (queue,)).rowcount

    def _drop_queue(self, queue: str) -> int:
        with self.db.transaction() as conn:
            removed = conn.execute("DELETE FROM bus_messages WHERE queue = %s",
                                   (queue,)).rowcount
            conn.execute("DELETE FROM bus_queues WHERE name = %s", (queue,))
            self._known.discard(queue)
        return removed

    def _redrive(self, dlq: str, to_queue: str | None, now: float) -> dict[str, int]:
        moved: dict[str, int] = {}
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT seq, message_id, source_queue FROM bus_messages WHERE queue = %s "
                "AND NOT (receipt IS NOT NULL AND visible_at > %s) ORDER BY seq "
                "FOR UPDATE SKIP LOCKED", (dlq, now)).fetchall()
            for seq, message_id, source in rows:
                target = to_queue or source
                if target is None:
                    continue
                self._register(conn, target)
                _move(conn, seq, message_id, target,
                      "source_queue = NULL, receipt = NULL, receive_count = 0, "
                      "first_received_at = NULL, visible_at = %s", (now,))
                moved[target] = moved.get(target, 0) + 1
            self._notify(conn, set(moved))
        return moved


def _move(conn: Any, seq: int, message_id: str, target: str, assignments: str,
          args: tuple) -> None:
    """Move a row to ``target``, replacing a message of the same id there (as
    SQLite's UPDATE OR REPLACE does)."""
    conn.execute("DELETE FROM bus_messages WHERE queue = %s AND message_id = %s AND seq <> %s",
                 (target, message_id, seq))
    conn.execute(f"UPDATE bus_messages SET queue = %s, {assignments} WHERE seq = %s",
                 (target, *args, seq))


def _policy(conn: Any, queue: str) -> RedrivePolicy | None:
    row = conn.execute("SELECT dead_letter_queue, max_receive_count FROM bus_queues "
                       "WHERE name = %s", (queue,)).fetchone()
    if row is None or row[0] is None:
        return None
    return RedrivePolicy(row[0], row[1])


def _dump(attributes: dict[str, str]) -> str:
    return json.dumps(attributes, separators=(",", ":")) if attributes else "{}"
