"""The in-memory broker: the same contract as SQLite, nothing survives the
process. For tests, ``skiff dev`` and apps that opt out of durability.

Each queue keeps a heap of ``(visible_at, seq)``: every change of a message's
visibility pushes a new entry and leaves the old one stale (skipped when
popped), so a receive costs O(k log n) however deep the backlog.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass

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


@dataclass(slots=True)
class _Row:
    seq: int
    queue: str
    message_id: str
    body: bytes
    attributes: dict[str, str]
    sent_at: float
    visible_at: float
    receive_count: int = 0
    first_received_at: float | None = None
    receipt: str | None = None
    source_queue: str | None = None

    def leased(self, now: float) -> bool:
        return self.receipt is not None and self.visible_at > now

    def message(self, now: float) -> Message:
        return Message(self.queue, self.message_id, self.body, dict(self.attributes),
                       self.sent_at, self.visible_at, self.receive_count,
                       self.first_received_at, self.source_queue, self.leased(now))


class MemoryBroker(Broker):
    def __init__(self, *, clock: Clock = time.time, max_body_bytes: int = MAX_BODY_BYTES,
                 poll_interval: float = 5.0) -> None:
        super().__init__(clock=clock, max_body_bytes=max_body_bytes, poll_interval=poll_interval)
        self._lock = threading.Lock()
        self._rows: dict[int, _Row] = {}
        self._queues: dict[str, dict[int, _Row]] = {}  # queue -> seq -> row
        self._ids: dict[tuple[str, str], int] = {}  # (queue, message_id) -> seq
        self._policies: dict[str, RedrivePolicy] = {}
        self._heaps: dict[str, list[tuple[float, int]]] = {}  # queue -> (visible_at, seq)
        self._seq = itertools.count(1)

    def _queue(self, name: str) -> dict[int, _Row]:
        return self._queues.setdefault(name, {})

    def _add(self, row: _Row) -> None:
        old = self._ids.get((row.queue, row.message_id))
        if old is not None:  # a move onto an existing id replaces it, as in SQLite
            self._drop(self._rows[old])
        self._rows[row.seq] = row
        self._queue(row.queue)[row.seq] = row
        self._ids[(row.queue, row.message_id)] = row.seq
        self._schedule(row)

    def _schedule(self, row: _Row) -> None:
        heapq.heappush(self._heaps.setdefault(row.queue, []), (row.visible_at, row.seq))

    def _current(self, queue: str, entry: tuple[float, int]) -> _Row | None:
        row = self._rows.get(entry[1])
        if row is None or row.queue != queue or row.visible_at != entry[0]:
            return None
        return row

    def _drop(self, row: _Row) -> None:
        del self._rows[row.seq]
        del self._queues[row.queue][row.seq]
        del self._ids[(row.queue, row.message_id)]

    def _move(self, row: _Row, queue: str, **changes: object) -> None:
        self._drop(row)
        row.queue = queue
        for name, value in changes.items():
            setattr(row, name, value)
        self._add(row)

    def _insert(self, batches: dict[str, list[NewMessage]]) -> None:
        with self._lock:
            for queue, rows in batches.items():
                self._queue(queue)
                for m in rows:
                    if (queue, m.message_id) not in self._ids:
                        self._add(_Row(next(self._seq), queue, m.message_id, m.body,
                                       m.attributes, m.sent_at, m.visible_at))

    def _lease(self, queue: str, limit: int, visibility_timeout: float,
               now: float) -> tuple[list[Delivery], set[str]]:
        out: list[Delivery] = []
        moved: set[str] = set()
        with self._lock:
            policy = self._policies.get(queue)
            heap = self._heaps.get(queue, [])
            leased: dict[int, _Row] = {}
            while heap and heap[0][0] <= now and len(out) < limit:
                row = self._current(queue, heapq.heappop(heap))
                if row is None or row.seq in leased:
                    continue
                if policy is not None and row.receive_count >= policy.max_receive_count:
                    self._move(row, policy.dead_letter_queue, source_queue=queue,
                               receipt=None, visible_at=now)
                    moved.add(policy.dead_letter_queue)
                    continue
                row.receipt = new_receipt(row.seq)
                row.receive_count += 1
                if row.first_received_at is None:
                    row.first_received_at = now
                row.visible_at = now + visibility_timeout
                leased[row.seq] = row
                out.append(Delivery(queue, row.message_id, row.body, dict(row.attributes),
                                    row.receipt, row.receive_count, row.sent_at,
                                    row.first_received_at))
            for row in leased.values():  # after the loop: a zero timeout keeps them visible
                self._schedule(row)
        return out, moved

    def _delete(self, queue: str, leases: list[tuple[int, str]]) -> int:
        deleted = 0
        with self._lock:
            for seq, receipt in leases:
                row = self._rows.get(seq)
                if row is not None and row.queue == queue and row.receipt == receipt:
                    self._drop(row)
                    deleted += 1
        return deleted

    def _release(self, queue: str, seq: int, receipt: str, visible_at: float) -> bool:
        with self._lock:
            row = self._rows.get(seq)
            if row is None or row.queue != queue or row.receipt != receipt:
                return False
            row.receipt = None
            row.visible_at = visible_at
            self._schedule(row)
            return True

    def _next_visible_at(self, queue: str) -> float | None:
        with self._lock:
            heap = self._heaps.get(queue, [])
            while heap and self._current(queue, heap[0]) is None:
                heapq.heappop(heap)
            return heap[0][0] if heap else None

    def _set_policy(self, queue: str, policy: RedrivePolicy | None) -> None:
        with self._lock:
            self._queue(queue)
            if policy is None:
                self._policies.pop(queue, None)
            else:
                self._policies[queue] = policy
                self._queue(policy.dead_letter_queue)

    def _stats(self, now: float) -> list[QueueStats]:
        with self._lock:
            stats = []
            for name, rows in self._queues.items():
                visible = sum(1 for r in rows.values() if r.visible_at <= now)
                in_flight = sum(1 for r in rows.values() if r.leased(now))
                policy = self._policies.get(name)
                stats.append(QueueStats(
                    name, visible, in_flight, len(rows) - visible - in_flight,
                    policy.dead_letter_queue if policy else None,
                    policy.max_receive_count if policy else None))
            return stats

    def _peek(self, queue: str, limit: int, now: float) -> list[Message]:
        with self._lock:
            rows = sorted(self._queues.get(queue, {}).values(),
                          key=lambda r: (r.visible_at, r.seq))
            return [r.message(now) for r in rows[:limit]]

    def _purge(self, queue: str) -> int:
        with self._lock:
            rows = list(self._queues.get(queue, {}).values())
            for row in rows:
                self._drop(row)
            self._heaps.pop(queue, None)
            return len(rows)

    def _drop_queue(self, queue: str) -> int:
        removed = self._purge(queue)
        with self._lock:  # a send racing the delete may re-create the queue, as in SQLite
            if not self._queues.get(queue):
                self._queues.pop(queue, None)
            self._policies.pop(queue, None)
        return removed

    def _redrive(self, dlq: str, to_queue: str | None, now: float) -> dict[str, int]:
        moved: dict[str, int] = {}
        with self._lock:
            for row in sorted(self._queues.get(dlq, {}).values(), key=lambda r: r.seq):
                target = to_queue or row.source_queue
                if target is None or row.leased(now):
                    continue
                self._queue(target)
                self._move(row, target, source_queue=None, receipt=None, receive_count=0,
                           first_received_at=None, visible_at=now)
                moved[target] = moved.get(target, 0) + 1
        return moved
