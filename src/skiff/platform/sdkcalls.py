"""The platform side of ``skiff.sdk``: each call answered for the app whose
instance made it, in that app's fair share of the SDK threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

from skiff import ipc as p
from skiff.errors import SkiffError
from skiff.observe import Tracing
from skiff.sdk.services import Services

# skiff.sdk calls run on threads (SQLite blocks). One FIFO for every app let a flood of
# 100,000 calls from one app hold another app's KV call for 25 s (2.4 ms before). So each
# app runs at most this many calls at once and the rest wait in its own queue: another
# app's call waits behind at most this many of the flooder's.
SDK_CALLS_PER_APP = 4
# threads for those calls, their own (not asyncio's default executor, which deploys use
# for scans and installs that take minutes): room for four apps at their cap at once
SDK_THREADS = 4 * SDK_CALLS_PER_APP


class SdkCalls:
    """``tracing`` and ``parent_of`` (a request id -> its handler span's traceparent):
    each call of a traced request is a client span, the child of its handler span."""

    def __init__(self, services: Services, tracing: Tracing | None = None,
                 parent_of: Callable[[str], str | None] | None = None) -> None:
        self._services = services
        self._tracing = tracing
        self._parent_of = parent_of
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=SDK_THREADS, thread_name_prefix="skiff-sdk")
        self._slots: dict[str, asyncio.Semaphore] = {}

    async def answer(self, app: str, call: p.Call, *, traced: bool = False) -> p.CallResult:
        """The call's answer. ``traced``: the calling instance serves the request the
        call names (the caller checked), so its span may join that request's trace."""
        span = None
        if traced and self._tracing is not None and self._parent_of is not None:
            parent = self._parent_of(call.request_id)
            if parent:
                span = self._tracing.child(f"skiff.sdk {call.op}", parent, kind="client",
                                           attributes=_attributes(app, call))
                if span is not None:
                    _propagate(call, parent, span.traceparent)
        result = await self._answer(app, call)
        if span is not None:
            failed = not result.ok and result.code != "condition_failed"  # an answer, not a fault
            span.end(result.status or (200 if result.ok else 500),
                     result.code if failed else None,
                     {"skiff.sdk.code": result.code} if result.code else None)
        return result

    async def _answer(self, app: str, call: p.Call) -> p.CallResult:
        slots = self._slots.get(app)
        if slots is None:
            slots = self._slots[app] = asyncio.Semaphore(SDK_CALLS_PER_APP)
        try:
            async with slots:  # FIFO: the app's calls queue here, not in the shared threads
                value = await asyncio.get_running_loop().run_in_executor(
                    self._threads, self._services.call, app, call.op, call.args)
        except SkiffError as exc:
            return p.CallResult(id=call.id, ok=False, code=exc.code, message=exc.message,
                                status=exc.status)
        except (TypeError, ValueError) as exc:
            return p.CallResult(id=call.id, ok=False, code="bad_call", message=str(exc),
                                status=400)
        return p.CallResult(id=call.id, value=value)

    def forget(self, app: str) -> None:
        self._slots.pop(app, None)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


def _attributes(app: str, call: p.Call) -> dict[str, Any]:
    attrs: dict[str, Any] = {"faas.name": app, "skiff.sdk.operation": call.op}
    args = call.args if isinstance(call.args, dict) else {}
    if call.op == "queue.send" and isinstance(args.get("queue"), str):
        attrs.update({"messaging.system": "skiff", "messaging.operation.type": "send",
                      "messaging.destination.name": args["queue"]})
    elif call.op == "events.publish":
        event = args.get("event")
        if isinstance(event, dict) and isinstance(event.get("type"), str):
            attrs.update({"messaging.system": "skiff", "messaging.operation.type": "send",
                          "cloudevents.event_type": event["type"]})
    return attrs


def _propagate(call: p.Call, handler: str, span: str) -> None:
    """What the call sends carries its span as the parent of the delivery: a queue
    message without a traceparent of its own, an event whose traceparent is the
    handler's (the sdk sets that; one the app chose is kept)."""
    args = call.args
    if not isinstance(args, dict):
        return
    if call.op == "queue.send":
        attrs = args.get("attributes")
        if attrs is None:
            args["attributes"] = {"traceparent": span}
        elif isinstance(attrs, dict) and "traceparent" not in attrs:
            attrs["traceparent"] = span
    elif call.op == "events.publish":
        event = args.get("event")
        if isinstance(event, dict) and event.get("traceparent") == handler:
            event["traceparent"] = span
