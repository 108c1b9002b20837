"""Traces: a span per invocation, W3C ``traceparent`` in and out, OTLP/HTTP export.

Export is on when the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (and ``OTEL_SDK_DISABLED`` is not
``true``); sampling follows ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``
(the SDK's default, parent-based always-on, when unset) and the batch queue the
``OTEL_BSP_*`` variables. Off, no SDK is imported and a span is two random ids:
the trace still flows (into the instance, the invocation record, the response
header) at the cost of two ``random.getrandbits``.

Spans are ended on the request path and exported by the SDK's
``BatchSpanProcessor`` thread from a bounded queue: an endpoint that is down
or slow costs dropped spans, never a waiting request. Its errors are reported
as one ``skiff:`` warning a minute, not one per batch.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
import types
from collections.abc import Mapping
from typing import Any

from skiff.logtext import one_line

#: W3C Trace Context Level 2's name for the context a server returns.
RESPONSE_HEADER = b"traceresponse"
#: Warnings of the exporter (an endpoint that is down fails every batch) are
#: reported at most this often.
WARN_EVERY_SECONDS = 60.0

_HEX = frozenset("0123456789abcdef")


def parse(traceparent: str | None) -> tuple[str, str, bool] | None:
    """(trace id, parent span id, sampled) of a valid version-00 ``traceparent``, else
    None (the W3C rule: an invalid header is ignored and a new trace started). Written
    out rather than with a regex: it runs on every request."""
    if not traceparent or len(traceparent) < 55:
        return None
    tp = traceparent.strip().lower()
    if len(tp) < 55 or tp[2] != "-" or tp[35] != "-" or tp[52] != "-":
        return None
    version, trace_id, span_id, flags = tp[:2], tp[3:35], tp[36:52], tp[53:55]
    if version == "ff" or (version == "00" and len(tp) != 55) or (len(tp) > 55 and tp[55] != "-"):
        return None
    if not _HEX.issuperset(version + trace_id + span_id + flags):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


class Span:
    """One span, whatever records it: its ids, and :meth:`end`."""

    __slots__ = ("_rec", "sampled", "span_id", "trace_id")

    def __init__(self, trace_id: str, span_id: str, sampled: bool,
                 rec: _Recording | None = None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self._rec = rec

    @property
    def traceparent(self) -> str:
        """This span as the parent of what it calls (the instance, a queued message)."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def end(self, status: int = 200, error: str | None = None,
            attributes: Mapping[str, Any] | None = None, *,
            start_ns: int | None = None, end_ns: int | None = None) -> None:
        """Ends the span (now, unless ``end_ns``; ``start_ns`` moves its start: a
        span the gateway emits for what it did not watch, the handler's run)."""
        rec = self._rec
        if rec is not None:
            self._rec = None
            if start_ns is not None:
                rec.start_ns = start_ns
            rec.finish(self, status, error, attributes, end_ns)


class _Recording:
    """What a sampled span keeps until it ends."""

    __slots__ = ("attributes", "kind", "name", "parent", "start_ns", "trace_state", "tracing")

    def __init__(self, tracing: Tracing, name: str, kind: Any, parent: Any,
                 attributes: dict[str, Any], trace_state: Any) -> None:
        self.tracing, self.name, self.kind, self.parent = tracing, name, kind, parent
        self.attributes, self.trace_state = attributes, trace_state
        self.start_ns = time.time_ns()

    def finish(self, span: Span, status: int, error: str | None,
               attributes: Mapping[str, Any] | None, end_ns: int | None = None) -> None:
        t = self.tracing
        o = t._otel  # the SDK's classes, looked up once (an import statement a span cost 2 us)
        attrs = self.attributes
        if attributes:
            attrs.update(attributes)
        if self.kind in o.answering:  # what the invocation answered (not a handler's, an sdk call's)
            attrs["http.response.status_code"] = status
        state = o.unset
        if status >= 500 or error:
            state = o.Status(o.StatusCode.ERROR, error or f"status {status}")
            if error:
                attrs["error.type"] = error
        ctx = o.SpanContext(int(span.trace_id, 16), int(span.span_id, 16), is_remote=False,
                            trace_flags=o.sampled, trace_state=self.trace_state)
        t._processor.on_end(o.ReadableSpan(
            self.name, ctx, self.parent, t._resource, attrs, kind=self.kind, status=state,
            start_time=self.start_ns, end_time=end_ns or time.time_ns(),
            instrumentation_scope=t._scope))


class Tracing:
    """Spans of the platform: :meth:`span` starts one; :meth:`shutdown` flushes.

    The SDK's sampler, resource, batch processor and OTLP exporter do their jobs;
    the span itself is built once, finished, at its end (``ReadableSpan``, what the
    processor and the exporter read) rather than through ``Tracer.start_span``:
    measured on this machine, 2.7 us a span instead of 49 us, which on a request
    path of ~140 us was the difference between ~2 % and ~35 % of throughput."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        endpoint = (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                    or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        self.enabled = bool(endpoint) and env.get("OTEL_SDK_DISABLED", "").lower() != "true"
        self.endpoint = endpoint or ""
        self._processor: Any = None
        if self.enabled:
            self._start(env)

    def _start(self, env: Mapping[str, str]) -> None:
        # imported only when export is on: the SDK and the exporter cost ~100 ms of
        # imports the platform otherwise never pays
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        self._otel = types.SimpleNamespace(
            ReadableSpan=ReadableSpan, SpanContext=SpanContext, Status=Status,
            StatusCode=StatusCode, unset=Status(StatusCode.UNSET), sampled=TraceFlags(1),
            answering=frozenset({SpanKind.SERVER, SpanKind.CONSUMER}))

        _quiet_sdk_logs()
        self._resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "skiff")})
        # the provider resolves OTEL_TRACES_SAMPLER / _ARG as the SDK documents them
        self._sampler = TracerProvider(resource=self._resource).sampler
        self._scope = InstrumentationScope("skiff")
        self._trace = trace
        # the signal's own endpoint is used as given; the general one gets /v1/traces
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
            self.endpoint.rstrip("/") + "/v1/traces")
        self._processor = BatchSpanProcessor(OTLPSpanExporter(endpoint))  # OTEL_BSP_* bound it

    def span(self, name: str, traceparent: str | None, *, kind: str = "server",
             attributes: Mapping[str, Any] | None = None) -> Span:
        """A span starting now, the child of ``traceparent`` if it is valid (else the
        root of a new trace). ``kind``: server, consumer or internal."""
        parent = parse(traceparent)
        if self._processor is None:  # ids as the SDK's RandomIdGenerator makes them
            span_id = f"{random.getrandbits(64) or 1:016x}"
            if parent is None:
                return Span(f"{random.getrandbits(128) or 1:032x}", span_id, True)
            return Span(parent[0], span_id, parent[2])
        trace = self._trace
        parent_ctx = context = None
        if parent is not None:
            trace_id = int(parent[0], 16)
            parent_ctx = trace.SpanContext(trace_id, int(parent[1], 16), is_remote=True,
                                           trace_flags=trace.TraceFlags(1 if parent[2] else 0))
            context = trace.set_span_in_context(trace.NonRecordingSpan(parent_ctx))
        else:
            trace_id = random.getrandbits(128) or 1  # the SDK's RandomIdGenerator does this
        span_id = random.getrandbits(64) or 1
        otel_kind = _KINDS[kind]
        sampled = self._sampler.should_sample(context, trace_id, name, otel_kind, attributes)
        if not sampled.decision.is_sampled():
            return Span(f"{trace_id:032x}", f"{span_id:016x}", False)
        attrs = dict(attributes or ())
        if sampled.attributes:
            attrs.update(sampled.attributes)
        return Span(f"{trace_id:032x}", f"{span_id:016x}", True, _Recording(
            self, name, otel_kind, parent_ctx, attrs, sampled.trace_state))

    @property
    def recording(self) -> bool:
        """Spans are exported (else :meth:`child` is never worth calling)."""
        return self._processor is not None

    def child(self, name: str, traceparent: str, *, kind: str = "internal",
              attributes: Mapping[str, Any] | None = None) -> Span | None:
        """A span of the platform's own inside the one ``traceparent`` names (the
        handler's run in the instance, an sdk call): recorded when its parent is, with
        no sampler asked (a parent-based decision, made once for the trace). None when
        nothing is recorded."""
        if self._processor is None:
            return None
        parent = parse(traceparent)
        if parent is None or not parent[2]:
            return None
        trace = self._trace
        trace_id = int(parent[0], 16)
        parent_ctx = trace.SpanContext(trace_id, int(parent[1], 16), is_remote=False,
                                       trace_flags=trace.TraceFlags(1))
        span_id = random.getrandbits(64) or 1
        return Span(parent[0], f"{span_id:016x}", True, _Recording(
            self, name, _KINDS[kind], parent_ctx, dict(attributes or ()), None))

    def http_span(self, method: str, app: str, path: str, traceparent: str | None) -> Span:
        """The gateway's server span of one request (its name and attributes are built
        only when spans are recorded: this runs on every request)."""
        if self._processor is None:
            return self.span("", traceparent)
        return self.span(f"{method} /{app}", traceparent, attributes={
            "http.request.method": method, "url.path": path, "faas.name": app,
            "faas.trigger": "http"})

    def shutdown(self) -> None:
        """Export what is queued (bounded by the exporter's timeout) and stop."""
        if self._processor is not None:
            self._processor.shutdown()
            self._processor = None


class _KindMap(dict):
    def __missing__(self, key: str) -> Any:
        from opentelemetry.trace import SpanKind

        self.update(server=SpanKind.SERVER, consumer=SpanKind.CONSUMER,
                    internal=SpanKind.INTERNAL, producer=SpanKind.PRODUCER,
                    client=SpanKind.CLIENT)
        return self[key]


_KINDS = _KindMap()


class _OncePerMinute(logging.Filter):
    """One record per :data:`WARN_EVERY_SECONDS`, and how many were left out."""

    def __init__(self) -> None:
        super().__init__()
        self._next = 0.0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now < self._next:
            self._dropped += 1
            return False
        self._next = now + WARN_EVERY_SECONDS
        if self._dropped:
            record.msg = f"{record.getMessage()} ({self._dropped} similar messages left out)"
            record.args = ()
            self._dropped = 0
        return True


def _quiet_sdk_logs() -> None:
    """The SDK's warnings (an export that failed, a full queue) to stderr as ``skiff:``
    lines, at most one a minute: an endpoint that is down fails every batch."""
    sdk = logging.getLogger("opentelemetry")
    if getattr(sdk, "_skiff_quiet", False):
        return
    # "Queue full, dropping span" is logged per span, on the request path, while the
    # endpoint is down (a LogRecord each: ~100 us a request, measured); the exporter's
    # own warning, a minute apart, already says that spans are dropped
    logging.getLogger("opentelemetry.sdk._shared_internal").setLevel(logging.ERROR)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.addFilter(_OncePerMinute())
    handler.setFormatter(_OneLine("skiff: traces (spans are dropped, requests go on): "
                                  "%(message)s"))
    sdk.addHandler(handler)
    sdk.propagate = False
    sdk._skiff_quiet = True  # type: ignore[attr-defined]


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.exc_info = record.exc_text = None  # a traceback a minute helps no one
        return one_line(super().format(record))
