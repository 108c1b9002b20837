"""In-process wake-ups for queue consumers.

A consumer that finds its queue empty should sleep until something may have
arrived, not poll SQLite in a tight loop. Every broker owns one
:class:`QueueSignals`; it bumps a per-queue sequence number after each commit
that can make a message visible (send, nack, redrive, a move to a dead-letter
queue) and wakes whoever waits on that queue: threads blocked on a condition,
asyncio tasks awaiting an ``asyncio.Event`` (set through
``loop.call_soon_threadsafe``, so a send from any thread wakes a task promptly),
and plain listener callbacks for dispatchers that watch many queues at once.

Waiting is race-free when the waiter takes :meth:`QueueSignals.token` (or
enters :meth:`QueueSignals.subscribe`) *before* it checks the queue: a send that
lands after the check still changes the token or sets the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator

Listener = Callable[[str], None]


class QueueSignals:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}
        self._conds: dict[str, threading.Condition] = {}
        self._events: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._listeners: list[Listener] = []

    def token(self, queue: str) -> int:
        with self._lock:
            return self._seq.get(queue, 0)

    def notify(self, queue: str) -> None:
        with self._lock:
            self._seq[queue] = self._seq.get(queue, 0) + 1
            cond = self._conds.get(queue)
            if cond is not None:
                cond.notify_all()
            events = list(self._events.get(queue, ()))
            listeners = list(self._listeners)
        for loop, event in events:
            with contextlib.suppress(RuntimeError):  # the waiter's loop is closed
                loop.call_soon_threadsafe(event.set)
        for listener in listeners:
            listener(queue)

    def wait(self, queue: str, token: int, timeout: float) -> bool:
        """Block until ``queue`` is notified after ``token`` was taken, or ``timeout``."""
        with self._lock:
            cond = self._conds.get(queue)
            if cond is None:
                cond = self._conds[queue] = threading.Condition(self._lock)
            return cond.wait_for(lambda: self._seq.get(queue, 0) != token, max(0.0, timeout))

    @contextlib.contextmanager
    def subscribe(self, queue: str) -> Iterator[asyncio.Event]:
        """An ``asyncio.Event`` of the running loop, set at the next notify of ``queue``."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._events.setdefault(queue, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                waiting = self._events.get(queue)
                if waiting is not None:
                    waiting.discard(entry)
                    if not waiting:
                        del self._events[queue]

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove
