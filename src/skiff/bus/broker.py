"""The at-least-once queue interface every broker backend implements.

The model is Dramatiq's broker and SQS: a consumer *leases* messages with
:meth:`Broker.receive`, and a leased message stays in the queue, invisible,
until the consumer :meth:`~Broker.ack`\\ s it (done: delete) or
:meth:`~Broker.nack`\\ s it (retry: visible again after a delay). If the
consumer dies, the lease runs out after the visibility timeout and the message
is delivered again with ``receive_count + 1``. Nothing is ever
selected-then-deleted, so a crash between receive and processing loses nothing.

A queue may have a redrive policy (:meth:`Broker.configure`): a message whose
next delivery would exceed ``max_receive_count`` moves to the dead-letter queue
instead, as SQS does; :meth:`Broker.redrive` moves it back after a fix.

This base class owns everything that is not storage: argument checks, message
ids, wake-ups of waiting consumers (:meth:`Broker.wait`,
:meth:`Broker.wait_async`, :meth:`Broker.add_listener`). A backend implements
the underscored primitives, each one atomic. Time comes from ``clock``
(seconds since the epoch, persisted as such), so tests move time by hand.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import math
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType

from skiff.bus.errors import InvalidMessage, InvalidReceipt
from skiff.bus.signals import Listener, QueueSignals
from skiff.errors import PayloadTooLarge

Clock = Callable[[], float]

#: SQS allows 256 KiB; a micro app's message is small, and a bigger payload
#: belongs in a blob store with its key in the message.
MAX_BODY_BYTES = 1024 * 1024
_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One entry of :meth:`Broker.send_batch`."""

    body: bytes
    attributes: Mapping[str, str] | None = None
    delay: float = 0.0
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A leased message. ``receipt`` is the lease: pass it to ack or nack."""

    queue: str
    message_id: str
    body: bytes
    attributes: dict[str, str]
    receipt: str
    receive_count: int
    sent_at: float
    first_received_at: float


@dataclass(frozen=True, slots=True)
class Message:
    """A message as :meth:`Broker.peek` shows it to an operator (no lease taken)."""

    queue: str
    message_id: str
    body: bytes
    attributes: dict[str, str]
    sent_at: float
    visible_at: float
    receive_count: int
    first_received_at: float | None
    source_queue: str | None
    leased: bool


@dataclass(frozen=True, slots=True)
class QueueStats:
    name: str
    visible: int
    in_flight: int
    delayed: int
    dead_letter_queue: str | None = None
    max_receive_count: int | None = None


@dataclass(frozen=True, slots=True)
class RedrivePolicy:
    dead_letter_queue: str
    max_receive_count: int


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A validated message on its way into a backend."""

    message_id: str
    body: bytes
    attributes: dict[str, str]
    sent_at: float
    visible_at: float


class Broker(abc.ABC):
    """Abstract at-least-once broker. Thread-safe; see the module docstring."""

    #: True when primitives may block (disk I/O): ``wait_async`` then runs its
    #: queue check in a worker thread instead of on the event loop.
    blocking_io = False

    def __init__(self, *, clock: Clock = time.time, max_body_bytes: int = MAX_BODY_BYTES,
                 poll_interval: float = 5.0) -> None:
        self.clock = clock
        self.max_body_bytes = max_body_bytes
        #: Longest sleep of ``wait``/``wait_async`` without a wake-up; it bounds
        #: how late a message from *another process* sharing the store is seen.
        self.poll_interval = poll_interval
        self.signals = QueueSignals()

    # -- producing -------------------------------------------------------------
    def send(self, queue: str, body: bytes, *, attributes: Mapping[str, str] | None = None,
             delay: float = 0.0, message_id: str | None = None) -> str:
        """Enqueue one message; return its id. It is durable when this returns.

        A ``message_id`` that is already in ``queue`` is not enqueued twice
        (idempotent producers, e.g. one id per cron fire).
        """
        return self.send_batch(queue, [Outgoing(body, attributes, delay, message_id)])[0]

    def send_batch(self, queue: str, entries: Iterable[Outgoing]) -> list[str]:
        """Enqueue several messages in one transaction (one fsync); return their ids."""
        return self.send_many((queue, entry) for entry in entries)

    def send_many(self, entries: Iterable[tuple[str, Outgoing]]) -> list[str]:
        """Enqueue messages to several queues in one transaction (a fan-out of one
        event to many rules costs one fsync); return their ids in order."""
        now = self.clock()
        batches: dict[str, list[NewMessage]] = {}
        ids = []
        for queue, entry in entries:
            _check_queue(queue)
            row = self._prepare(entry, now)
            batches.setdefault(queue, []).append(row)
            ids.append(row.message_id)
        if batches:
            self._insert(batches)
            for queue in batches:
                self.signals.notify(queue)
        return ids

    # -- consuming -------------------------------------------------------------
    def receive(self, queue: str, *, max_messages: int = 10,
                visibility_timeout: float = 30.0) -> list[Delivery]:
        """Lease up to ``max_messages`` visible messages, oldest-visible first."""
        _check_queue(queue)
        if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1:
            raise InvalidMessage(f"max_messages must be a positive integer, got {max_messages!r}")
        _check_seconds("visibility_timeout", visibility_timeout)
        deliveries, moved_to = self._lease(queue, max_messages, visibility_timeout, self.clock())
        for dlq in moved_to:
            self.signals.notify(dlq)
        return deliveries

    def ack(self, queue: str, receipt: str) -> bool:
        """Delete a leased message. False if the lease was lost (it was or will be
        redelivered, so the work may run twice: at-least-once)."""
        _check_queue(queue)
        return self._delete(queue, [(_receipt_seq(receipt), receipt)]) == 1

    def ack_batch(self, queue: str, receipts: Iterable[str]) -> int:
        """Delete several leased messages in one transaction; return how many."""
        _check_queue(queue)
        leases = [(_receipt_seq(r), r) for r in receipts]
        return self._delete(queue, leases) if leases else 0

    def nack(self, queue: str, receipt: str, *, delay: float = 0.0) -> bool:
        """Give a leased message back, visible again after ``delay`` seconds."""
        _check_queue(queue)
        _check_seconds("delay", delay)
        released = self._release(queue, _receipt_seq(receipt), receipt, self.clock() + delay)
        if released:
            self.signals.notify(queue)
        return released

    # -- waiting ---------------------------------------------------------------
    def next_visible_at(self, queue: str) -> float | None:
        """When the next message of ``queue`` is (or was) visible; None if empty."""
        _check_queue(queue)
        return self._next_visible_at(queue)

    def wait(self, queue: str, timeout: float) -> bool:
        """Block until a message of ``queue`` may be visible; False on timeout.

        Woken at once by a send/nack/redrive in this process, at the time a
        delayed message or an expired lease becomes visible, and at least every
        ``poll_interval`` seconds. A True is a hint: receive may still race.
        """
        _check_queue(queue)
        deadline = time.monotonic() + timeout
        while True:
            token = self.signals.token(queue)
            until = self._until_visible(queue)
            if until == 0.0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.signals.wait(queue, token, self._step(remaining, until))

    async def wait_async(self, queue: str, timeout: float) -> bool:
        """:meth:`wait` for asyncio consumers: sleeps on an ``asyncio.Event``,
        never blocks the event loop on the queue check of a disk backend::

            while running:
                batch = await asyncio.to_thread(broker.receive, queue, max_messages=10)
                if not batch:
                    await broker.wait_async(queue, timeout=20)
                    continue
                ...  # handle, then ack / nack each delivery (in a thread too)
        """
        _check_queue(queue)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self.signals.subscribe(queue) as event:
                if self.blocking_io:
                    until = await asyncio.to_thread(self._until_visible, queue)
                else:
                    until = self._until_visible(queue)
                if until == 0.0:
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), self._step(remaining, until))

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(queue)`` after every commit that may make a message of
        ``queue`` visible, in the committing thread. Keep it short and
        non-blocking (e.g. ``loop.call_soon_threadsafe``). Returns a remover."""
        return self.signals.add_listener(listener)

    def listen(self) -> Callable[[], None]:
        """Relay the commits of *other processes* to this broker's wake-ups
        (``self.signals.notify(queue)``) until the returned stop function is called.

        Commits made through this object notify by themselves; a dispatcher
        (:class:`skiff.triggers.dispatch.Dispatcher`) calls this once so that a
        backend shared by several processes wakes it too, e.g. Postgres with
        ``LISTEN`` on a channel its commits ``NOTIFY``. SQLite
        and memory brokers are owned by one process: nothing to relay."""
        return _nothing

    # -- operating ---------------------------------------------------------------
    def configure(self, queue: str, *, dead_letter_queue: str | None = None,
                  max_receive_count: int | None = None) -> None:
        """Set (both given) or clear (both None) the redrive policy of ``queue``."""
        _check_queue(queue)
        if dead_letter_queue is None and max_receive_count is None:
            self._set_policy(queue, None)
            return
        if dead_letter_queue is None or max_receive_count is None:
            raise InvalidMessage("a redrive policy needs both dead_letter_queue and "
                                 "max_receive_count (or neither, to remove it)")
        _check_queue(dead_letter_queue)
        if dead_letter_queue == queue:
            raise InvalidMessage(f"queue {queue!r} cannot be its own dead-letter queue")
        if (isinstance(max_receive_count, bool) or not isinstance(max_receive_count, int)
                or max_receive_count < 1):
            raise InvalidMessage(
                f"max_receive_count must be a positive integer, got {max_receive_count!r}")
        self._set_policy(queue, RedrivePolicy(dead_letter_queue, max_receive_count))

    def queues(self) -> list[QueueStats]:
        """Every queue that has messages or a policy or was ever sent to, by name."""
        return sorted(self._stats(self.clock()), key=lambda s: s.name)

    def peek(self, queue: str, limit: int = 10) -> list[Message]:
        """Look at up to ``limit`` messages in delivery order, without leasing them."""
        _check_queue(queue)
        return self._peek(queue, max(0, limit), self.clock())

    def purge(self, queue: str) -> int:
        """Delete every message of ``queue``, leased or not; return how many."""
        _check_queue(queue)
        return self._purge(queue)

    def delete_queue(self, queue: str) -> int:
        """Delete ``queue``: its messages (leased or not), its redrive policy and its
        name (it is no longer listed); return how many messages went. A consumer
        still holding a lease finds its ack refused."""
        _check_queue(queue)
        return self._drop_queue(queue)

    def redrive(self, dlq: str, to_queue: str | None = None) -> int:
        """Move messages that are not leased out of ``dlq``: to ``to_queue``, or
        back to the queue each came from. Receive counts restart at 0. A
        message sent straight to ``dlq`` has no source and stays unless
        ``to_queue`` is given. Returns how many moved."""
        _check_queue(dlq)
        if to_queue is not None:
            _check_queue(to_queue)
        moved = self._redrive(dlq, to_queue, self.clock())
        for queue in moved:
            self.signals.notify(queue)
        return sum(moved.values())

    def release_leases(self) -> int:
        """Make every leased message visible now. Only for the one process that owns
        the store, at its start: the leases of its previous life died with it, and
        waiting out their visibility timeouts would only delay recovery."""
        return 0

    def close(self) -> None:  # noqa: B027 - a backend without resources needs nothing
        """Release the backend's resources."""

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- primitives a backend implements (each atomic) --------------------------
    @abc.abstractmethod
    def _insert(self, batches: dict[str, list[NewMessage]]) -> None:
        """Add each queue's rows, all or none; skip a row whose message_id is
        already in its queue."""

    @abc.abstractmethod
    def _lease(self, queue: str, limit: int, visibility_timeout: float,
               now: float) -> tuple[list[Delivery], set[str]]:
        """Lease up to ``limit`` messages visible at ``now``, ordered by
        (visible_at, arrival). A message whose receive_count has reached the
        queue's max_receive_count moves to the dead-letter queue instead (its
        source_queue set, visible at ``now``). Returns the deliveries and the
        queues that received moved messages."""

    @abc.abstractmethod
    def _delete(self, queue: str, leases: list[tuple[int, str]]) -> int:
        """Delete messages whose current receipt matches; return the count."""

    @abc.abstractmethod
    def _release(self, queue: str, seq: int, receipt: str, visible_at: float) -> bool:
        """Drop the lease if the receipt matches and set visible_at."""

    @abc.abstractmethod
    def _next_visible_at(self, queue: str) -> float | None: ...

    @abc.abstractmethod
    def _set_policy(self, queue: str, policy: RedrivePolicy | None) -> None: ...

    @abc.abstractmethod
    def _stats(self, now: float) -> list[QueueStats]: ...

    @abc.abstractmethod
    def _peek(self, queue: str, limit: int, now: float) -> list[Message]: ...

    @abc.abstractmethod
    def _purge(self, queue: str) -> int: ...

    @abc.abstractmethod
    def _drop_queue(self, queue: str) -> int: ...

    @abc.abstractmethod
    def _redrive(self, dlq: str, to_queue: str | None, now: float) -> dict[str, int]:
        """Move unleased messages; return {target queue: count}."""

    # -- helpers -------------------------------------------------------------------
    def _prepare(self, entry: Outgoing, now: float) -> NewMessage:
        body = entry.body
        if isinstance(body, bytearray | memoryview):
            body = bytes(body)
        if not isinstance(body, bytes):
            raise InvalidMessage(f"a message body must be bytes, got {type(body).__name__}"
                                 " (encode text as UTF-8 first)")
        if len(body) > self.max_body_bytes:
            raise PayloadTooLarge(f"message body of {len(body)} bytes is over the "
                                  f"{self.max_body_bytes}-byte limit",
                                  limit=self.max_body_bytes)
        attributes = dict(entry.attributes or {})
        for name, value in attributes.items():
            if not isinstance(name, str) or not name or not isinstance(value, str):
                raise InvalidMessage(f"message attributes must map non-empty str to str; "
                                     f"got {name!r}: {value!r}")
        _check_seconds("delay", entry.delay)
        message_id = entry.message_id
        if message_id is None:
            message_id = str(uuid.uuid4())
        elif not isinstance(message_id, str) or not 0 < len(message_id) <= 128:
            raise InvalidMessage(f"message_id must be a str of 1 to 128 characters, "
                                 f"got {message_id!r}")
        return NewMessage(message_id, body, attributes, now, now + entry.delay)

    def _until_visible(self, queue: str) -> float | None:
        at = self._next_visible_at(queue)
        return None if at is None else max(0.0, at - self.clock())

    def _step(self, remaining: float, until: float | None) -> float:
        return min(remaining, self.poll_interval, math.inf if until is None else until)


def _nothing() -> None:
    pass


def new_receipt(seq: int) -> str:
    """A lease token: the row it names and a random part no other lease shares."""
    return f"{seq}.{secrets.token_hex(8)}"


def _receipt_seq(receipt: str) -> int:
    seq, dot, _ = receipt.partition(".") if isinstance(receipt, str) else ("", "", "")
    if not dot or not seq.isdigit():
        raise InvalidReceipt(f"not a receipt of this broker: {receipt!r}")
    return int(seq)


def _check_queue(queue: str) -> None:
    if not isinstance(queue, str) or not _QUEUE_NAME.fullmatch(queue):
        raise InvalidMessage(f"invalid queue name {queue!r}: use 1 to 200 letters, digits "
                             "and . _ : / - (starting with a letter or digit)")


def _check_seconds(name: str, value: float) -> None:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value < 0):
        raise InvalidMessage(f"{name} must be a finite number of seconds >= 0, got {value!r}")
