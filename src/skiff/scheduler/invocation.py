"""The one message every entry path produces: HTTP, the admin API's invoke, and
the event plane (async, queue, schedule, rule). Everything downstream of the
entry (the pool, the instance, the invocation record) reads it, never the
entry's own types."""

from __future__ import annotations

import time
from dataclasses import dataclass

from skiff import ipc as p


@dataclass(frozen=True)
class Invocation:
    id: str
    app: str
    trigger: str  # http | websocket | invoke | event | queue (the record's trigger)
    request: p.HttpRequest | p.Event | p.WsConnect  # what the instance is sent
    deadline: float  # unix seconds; the instance's context shows the same
    traceparent: str | None = None
    attempt: int = 1  # deliveries so far, for at-least-once triggers

    @classmethod
    def start(cls, app: str, trigger: str, request: p.HttpRequest | p.Event | p.WsConnect, *,
              timeout: float, traceparent: str | None = None, attempt: int = 1) -> Invocation:
        """The invocation of ``request`` starting now: the one place a deadline is made
        (the app's ``timeout`` from now), written into the request for the instance."""
        deadline = time.time() + timeout
        request.deadline_ms = deadline * 1000
        return cls(id=request.id, app=app, trigger=trigger, request=request, deadline=deadline,
                   traceparent=traceparent, attempt=attempt)
