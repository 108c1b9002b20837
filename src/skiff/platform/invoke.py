"""The invoke path: one :class:`Invocation` to the app's pool, recorded whatever
its outcome (a streamed response when its stream is over)."""

from __future__ import annotations

import time
from typing import Any

from skiff import ipc as p
from skiff.errors import InvocationError, InvocationTimeout, NotFound, SkiffError
from skiff.observe import Observe
from skiff.platform.logsink import LogSink
from skiff.platform.registry import App, Registry
from skiff.scheduler import Invocation, Served, Stream, WebSocket
from skiff.store import Invocation as InvocationRecord
from skiff.store import Store

#: Failures whose message is the app's own words (what it raised or returned),
#: logged on its stderr; the others are the platform's and have their own lines.
_APP_WORDS = frozenset({"handler_error", "bad_result", "not_supported"})


class Invoker:
    def __init__(self, registry: Registry, store: Store, logs: LogSink,
                 observe: Observe | None = None) -> None:
        self._registry = registry
        self._store = store
        self._logs = logs
        self._observe = observe if observe is not None else Observe()
        # request id -> the traceparent of its handler span, while it runs (recorded
        # traces only): the parent of the skiff.sdk calls the request makes
        self._handlers: dict[str, str] = {}

    def handler_traceparent(self, request_id: str) -> str | None:
        """The handler span of a request being served, None when it is not traced."""
        return self._handlers.get(request_id)

    async def __call__(self, inv: Invocation) -> p.Response:
        return await self.invoke(self._registry.get(inv.app), inv)

    async def invoke(self, app: App, inv: Invocation, *,
                     stream: bool = False) -> p.Response | Stream | WebSocket:
        """Run one invocation of ``app`` and record it, whatever its outcome. With
        ``stream``, a streamed response is returned as it comes (the gateway's), and
        recorded once the caller is through with it; else it is read whole. A
        WebSocket (the request a WsConnect) is recorded when it closes."""
        if app.pool is None:
            raise NotFound(f"app {app.name} serves only static files", code="route_not_found")
        observe = self._observe
        req = inv.request
        span = None
        traceparent = inv.traceparent
        if inv.trigger != "http" or not traceparent:
            # a delivery (async, queue, rule, schedule) or the admin's invoke: its own span,
            # the child of the one that accepted or sent it (the gateway's spans HTTP)
            span = observe.tracing.span(f"{inv.trigger} {app.name}", traceparent,
                                        kind="consumer" if inv.trigger != "invoke" else "server",
                                        attributes={"faas.trigger": _FAAS_TRIGGER.get(
                                            inv.trigger, "other"), "faas.name": app.name,
                                            "faas.invocation_id": inv.id,
                                            "skiff.attempt": inv.attempt})
            traceparent = span.traceparent
        handler = None
        if observe.tracing.recording:
            # the handler's run in the instance: a span the gateway emits (the instance
            # has no network), with ids chosen here; the app sees it as its parent
            handler = observe.tracing.child(f"{app.name} handler", traceparent, attributes={
                "faas.name": app.name, "faas.invocation_id": inv.id})
        if handler is not None:
            self._handlers[inv.id] = req.traceparent = handler.traceparent
        else:
            req.traceparent = traceparent
        if isinstance(req, p.HttpRequest):
            _trace_header(req, req.traceparent)
        t0 = time.perf_counter()
        started_ns = time.time_ns() if handler is not None else 0
        served: Served | None = None
        status, error, detail = 500, None, ""
        streaming: Stream | WebSocket | None = None
        ran = None
        try:
            resp, served = await app.pool.invoke(req)
            status = resp.status
            ran = getattr(resp, "ran", None)
            if isinstance(resp, WebSocket):
                streaming = resp
            elif isinstance(resp, Stream):
                if not stream:
                    resp = await _whole(resp, app.timeout)
                else:
                    streaming = resp
            return resp
        except SkiffError as exc:
            status, error = exc.status, exc.code
            ran = getattr(exc, "ran", None)
            if isinstance(exc, InvocationError):  # the caller is told less: the log has it
                detail = str(exc.details.get("traceback") or "").rstrip() or (
                    exc.message if exc.code in _APP_WORDS else "")
            raise
        finally:
            if streaming is None:
                self._record(app, inv, served, t0, status, error, detail, traceparent, span)
                if handler is not None:
                    self._end_handler(inv.id, handler, started_ns, served, ran, status, error)
            else:
                streaming.closed.add_done_callback(lambda closed: self._record(
                    app, inv, served, t0, status, closed.result(), "", traceparent, span))
                if handler is not None:
                    streaming.closed.add_done_callback(lambda closed: self._end_handler(
                        inv.id, handler, started_ns, served, None, status, closed.result()))

    def _end_handler(self, rid: str, handler: Any, started_ns: int, served: Served | None,
                     ran: Any, status: int, error: str | None) -> None:
        """The handler span, timed by the instance where its word fits what the gateway
        saw: it cannot start before the request was sent nor end after its answer came."""
        self._handlers.pop(rid, None)
        lo = started_ns + int((served.queued_ms if served else 0.0) * 1e6)
        start, end = handler_window(ran, lo, time.time_ns())
        attrs = {"faas.coldstart": served.cold} if served else None
        handler.end(status, error, attrs, start_ns=start, end_ns=end)

    def _record(self, app: App, inv: Invocation, served: Served | None, t0: float, status: int,
                error: str | None, detail: str, traceparent: str, span: Any) -> None:
        elapsed = (time.perf_counter() - t0) * 1000
        queued = served.queued_ms if served else 0.0
        record = InvocationRecord(
            id=inv.id, app=app.name, revision=served.revision if served else app.revision,
            instance=served.instance if served else "", trigger=inv.trigger,
            cold=served.cold if served else False, init_ms=served.init_ms if served else 0.0,
            duration_ms=max(0.0, elapsed - queued), queued_ms=queued,
            memory_mb=app.manifest.spec.resources.memory_mb, status=status, error=error,
            ts=time.time(), trace_id=traceparent[3:35])
        self._store.record(record)
        req = inv.request
        if isinstance(req, p.HttpRequest):
            self._observe.after_invocation(record, req.method, (req.mount or "") + req.path)
        else:
            self._observe.after_invocation(record)
        if span is not None:
            span.end(status, error, {"faas.coldstart": record.cold})
        if error:  # the invocation record has the rest; a log line per request cost
            # a third of the gateway's time in SQLite writes (profiled)
            self._logs.platform(app.name, record.revision, f"request failed: {error} "
                                f"(status {status}, {record.duration_ms:.2f} ms, trace "
                                f"{traceparent[3:35]})", request_id=inv.id,
                                instance=record.instance)
            if detail:  # the app's words, where `skiff logs` and the terminal show them
                self._logs.traceback(app.name, record.revision, detail, request_id=inv.id,
                                     instance=record.instance)


# OpenTelemetry's faas.trigger values for Skiff's triggers
_FAAS_TRIGGER = {"http": "http", "invoke": "other", "event": "pubsub", "queue": "pubsub"}


def _trace_header(req: p.HttpRequest, traceparent: str) -> None:
    """The app sees the platform's span as its parent (an app's own OpenTelemetry
    middleware reads the header), not the caller's, which the gateway's span is
    the child of."""
    headers = req.headers
    for i, (name, _) in enumerate(headers):
        if name == "traceparent":
            headers[i] = ("traceparent", traceparent)
            return
    headers.append(("traceparent", traceparent))


async def _whole(stream: Stream, timeout: float) -> p.Response:
    """A streamed response read whole (for callers that want one: ``skiff invoke``,
    triggers), within the response-size cap the stream keeps."""
    parts: list[bytes] = []
    try:
        while (part := await stream.read(timeout)) is not None:
            parts.append(part)
            stream.ack(len(part))
    except TimeoutError:
        stream.cancel("timeout")
        raise InvocationTimeout(f"the app sent no part of its response for {timeout:g}s "
                                "(raise spec.resources.timeout if this is expected)") from None
    except InvocationError:
        stream.cancel("broken")
        raise
    return p.Response(id=stream.id, status=stream.status, headers=stream.headers,
                      body=b"".join(parts))


def handler_window(ran: Any, lo: int, hi: int) -> tuple[int, int]:
    """The handler span's (start, end): what the instance says (``ran``) held within
    what the gateway saw (sent at ``lo``, answered by ``hi``); the gateway's window
    when the instance said nothing usable."""
    if not (isinstance(ran, tuple) and len(ran) == 2
            and all(isinstance(t, int) for t in ran)):
        return lo, hi
    start = min(max(ran[0], lo), hi)
    return start, min(max(ran[1], start), hi)
