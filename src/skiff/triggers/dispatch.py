"""One dispatcher per broker: consumers cost nothing while their queue is idle.

The event plane used to run a polling task per consumer (each async queue, queue
trigger and rule queue): with 500 registered idle apps the platform spent about
31 % of a core checking empty queues. Now a queue with nothing to do has no
task and no timer. Work is found two ways:

- **wake-ups**: the broker calls :meth:`Dispatcher._on_commit` after every commit
  that may make a message visible (send, nack, redrive, a move to a DLQ), from
  the committing thread (:meth:`skiff.bus.Broker.add_listener`). A broker that
  other processes write to relays their commits through :meth:`Broker.listen`
  (Postgres LISTEN/NOTIFY); SQLite and memory brokers are owned by one process.
- **timers**: when a queue runs dry, its next visible time (a delayed message, a
  retry's backoff, the end of a lease of work in flight) arms one loop timer for
  that queue; the loop keeps them in its own heap. A queue that is empty arms
  none.

A woken queue gets a *drain*: a task that leases a batch, hands it to the queue's
handler, and repeats until the queue has nothing visible, then ends. While every
drain of a queue is busy with a batch, a wake-up or a full batch starts another,
up to the consumer's ``concurrency``, so a queue never runs more batches at once
than it had consumer tasks before (async: up to 4; a queue trigger and a rule: 1).
Batching windows, leases and every ack/nack stay as they were: the handler owns
its batch.

Leases are still taken one queue at a time (one ``receive`` per look, in a worker
thread); a broker primitive leasing across queues in one statement would save
the thread trips of many busy queues, and is the next step if that shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from skiff.bus import Broker, Delivery

Handler = Callable[[list[Delivery]], Awaitable[None]]

#: A queue that was visible at the check yet gave no message is looked at again
#: this late, not at once (a clock step or a racing consumer must not spin us).
_MIN_TIMER = 0.05
#: How long a drain pauses after its batch raised (a consumer never dies of one).
_ERROR_PAUSE = 1.0


@dataclass(frozen=True)
class Consumer:
    """How one queue is consumed: its handler, its batch shape, its lease."""

    queue: str
    handle: Handler
    batch_size: int = 1
    window: float = 0.0  # maxBatchingWindow: wait this long to fill a batch
    visibility: float = 30.0  # the lease of each batch
    concurrency: int = 1  # batches in flight at once, at most


@dataclass(eq=False)
class _Queue:
    consumer: Consumer
    drains: set[asyncio.Task] = field(default_factory=set)
    dirty: bool = False  # woken since a drain last looked
    looking: int = 0  # drains leasing now (not running a batch)
    timer: asyncio.TimerHandle | None = None
    timer_at: float = 0.0  # broker clock


class Dispatcher:
    """Drives every consumer of one broker from its wake-ups and one timer per busy
    queue. Use from the event loop thread; the broker may commit from any thread."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._queues: dict[str, _Queue] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unlisten: list[Callable[[], None]] = []

    # -- consumers ------------------------------------------------------------------
    def add(self, consumer: Consumer) -> None:
        """Consume ``consumer.queue`` (replacing a previous consumer of it, whose
        batches in flight are cancelled); looks at the queue once now."""
        self._attach()
        self.remove(consumer.queue)
        self._queues[consumer.queue] = _Queue(consumer)
        self._poke(consumer.queue)

    def remove(self, queue: str) -> None:
        st = self._queues.pop(queue, None)
        if st is None:
            return
        if st.timer is not None:
            st.timer.cancel()
        for task in st.drains:
            task.cancel()

    def active(self) -> dict[str, int]:
        """Queues with work under way, and how many drains each runs (tests, /system)."""
        return {q: len(st.drains) for q, st in self._queues.items() if st.drains}

    def timers(self) -> int:
        return sum(1 for st in self._queues.values() if st.timer is not None)

    async def close(self) -> None:
        for stop in self._unlisten:
            stop()
        self._unlisten.clear()
        tasks = [t for st in self._queues.values() for t in st.drains]
        for queue in list(self._queues):
            self.remove(queue)
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- wake-ups -------------------------------------------------------------------
    def _attach(self) -> None:
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._unlisten.append(self.broker.add_listener(self._on_commit))
        self._unlisten.append(self.broker.listen())

    def _on_commit(self, queue: str) -> None:
        # any thread; a dict lookup is atomic, and most commits are to our queues
        if queue in self._queues and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: we are stopping
                self._loop.call_soon_threadsafe(self._poke, queue)

    def _poke(self, queue: str) -> None:
        st = self._queues.get(queue)
        if st is None:
            return
        st.dirty = True
        self._more(st)

    def _spawn(self, st: _Queue) -> None:
        assert self._loop is not None
        st.looking += 1  # from now: a poke before the task runs must not start another
        task = self._loop.create_task(self._drain(st))
        st.drains.add(task)
        task.add_done_callback(st.drains.discard)

    def _arm(self, st: _Queue, at: float) -> None:
        """Look at the queue again at broker time ``at`` (one timer per queue: the
        earliest wins)."""
        if self._queues.get(st.consumer.queue) is not st:
            return
        if st.timer is not None:
            if st.timer_at <= at:
                return
            st.timer.cancel()
        assert self._loop is not None
        delay = max(_MIN_TIMER, at - self.broker.clock())
        st.timer_at = at
        st.timer = self._loop.call_later(delay, self._ring, st)

    def _ring(self, st: _Queue) -> None:
        st.timer = None
        self._poke(st.consumer.queue)

    # -- draining -------------------------------------------------------------------
    def _claim(self, queue: str, limit: int, visibility: float
               ) -> tuple[list[Delivery], float | None]:
        """In a worker thread: lease up to ``limit``; if none, when to look again."""
        batch = self.broker.receive(queue, max_messages=limit, visibility_timeout=visibility)
        return batch, (None if batch else self.broker.next_visible_at(queue))

    async def _drain(self, st: _Queue) -> None:
        c = st.consumer
        counted = True  # _spawn counted this drain as looking
        while True:
            try:
                batch = await self._look(st, counted)
                counted = False
                if batch is None:
                    return
                if c.window > 0 and len(batch) < c.batch_size:
                    await self._fill(c, batch)
                await c.handle(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a consumer never dies of one batch
                print(f"skiff: consumer of {c.queue}: {exc!r}", file=sys.stderr)
                await asyncio.sleep(_ERROR_PAUSE)

    async def _look(self, st: _Queue, counted: bool) -> list[Delivery] | None:
        """Lease the next batch; None when the queue has nothing visible (a timer is
        then armed for its next visible time, if any)."""
        c = st.consumer
        if not counted:
            st.looking += 1
        try:
            while True:
                st.dirty = False
                batch, next_at = await asyncio.to_thread(self._claim, c.queue, c.batch_size,
                                                         c.visibility)
                if batch:
                    break
                if st.dirty:  # a commit landed while we looked: look again
                    continue
                if next_at is not None:
                    self._arm(st, next_at)
                elif st.timer is not None:  # armed for a lease since acked: nothing to wait for
                    st.timer.cancel()
                    st.timer = None
                return None
        finally:
            st.looking -= 1
        if len(batch) == c.batch_size:
            self._more(st)  # there may be more behind it
        return batch

    def _more(self, st: _Queue) -> None:
        """Have a drain look at the queue: one already looking will see the change
        (``dirty``); else start one, unless the consumer's batches are all in flight
        (a drain that finishes its batch looks again)."""
        if st.looking == 0 and len(st.drains) < st.consumer.concurrency:
            self._spawn(st)

    async def _fill(self, c: Consumer, batch: list[Delivery]) -> None:
        """Wait up to the batching window for the batch to fill (a queue with work:
        this wait exists only while a batch is being gathered)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + c.window
        while len(batch) < c.batch_size and (left := deadline - loop.time()) > 0:
            await self.broker.wait_async(c.queue, left)
            batch += await asyncio.to_thread(self.broker.receive, c.queue,
                                             max_messages=c.batch_size - len(batch),
                                             visibility_timeout=c.visibility)
