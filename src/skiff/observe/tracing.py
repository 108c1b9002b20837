"""Traces: a span per invocation, W3C ``traceparent`` in and out, OTLP/HTTP export.

Export is on when the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (and ``OTEL_SDK_DISABLED`` is not
``true``); sampling follows ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``
(the SDK's default, parent-based always-on, when unset) and the batch queue the
``OTEL_BSP_*`` variables. Off, no SDK is imported and a span is two random ids:
the trace still flows (into the instance, the invocation record, the response
header) at the cost of ``secrets.token_hex``.

Spans are ended on the request path and exported by the SDK's
``BatchSpanProcessor`` thread from a bounded queue: an endpoint that is down
or slow costs dropped spans, never a waiting request. Its errors are reported
as one ``skiff:`` warning a minute, not one per batch.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
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

    __slots__ = ("_otel", "sampled", "span_id", "trace_id")

    def __init__(self, trace_id: str, span_id: str, sampled: bool, otel: Any = None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self._otel = otel

    @property
    def traceparent(self) -> str:
        """This span as the parent of what it calls (the instance, a queued message)."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def end(self, status: int = 200, error: str | None = None,
            attributes: Mapping[str, Any] | None = None) -> None:
        otel = self._otel
        if otel is None:
            return
        if attributes:
            otel.set_attributes(attributes)
        otel.set_attribute("http.response.status_code", status)
        if status >= 500 or error:
            from opentelemetry.trace import Status, StatusCode

            otel.set_status(Status(StatusCode.ERROR, error or f"status {status}"))
            if error:
                otel.set_attribute("error.type", error)
        otel.end()


class Tracing:
    """Spans of the platform: :meth:`span` starts one; :meth:`shutdown` flushes."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        endpoint = (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                    or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        self.enabled = bool(endpoint) and env.get("OTEL_SDK_DISABLED", "").lower() != "true"
        self.endpoint = endpoint or ""
        self._tracer: Any = None
        self._provider: Any = None
        if self.enabled:
            self._start(env)

    def _start(self, env: Mapping[str, str]) -> None:
        # imported only when export is on: the SDK and the exporter cost ~100 ms of
        # imports the platform otherwise never pays
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        _quiet_sdk_logs()
        resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "skiff")})
        self._provider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER*
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._tracer = self._provider.get_tracer("skiff")

    def span(self, name: str, traceparent: str | None, *, kind: str = "server",
             attributes: Mapping[str, Any] | None = None) -> Span:
        """A span starting now, the child of ``traceparent`` if it is valid (else the
        root of a new trace). ``kind``: server, consumer or internal."""
        parent = parse(traceparent)
        tracer = self._tracer
        if tracer is None:
            if parent is None:
                return Span(secrets.token_hex(16), secrets.token_hex(8), True)
            return Span(parent[0], secrets.token_hex(8), parent[2])
        from opentelemetry import trace

        ctx = None
        if parent is not None:
            ctx = trace.set_span_in_context(trace.NonRecordingSpan(trace.SpanContext(
                int(parent[0], 16), int(parent[1], 16), is_remote=True,
                trace_flags=trace.TraceFlags(1 if parent[2] else 0))))
        otel = tracer.start_span(name, context=ctx, kind=_KINDS[kind], attributes=attributes)
        sc = otel.get_span_context()
        return Span(f"{sc.trace_id:032x}", f"{sc.span_id:016x}", sc.trace_flags.sampled,
                    otel if otel.is_recording() else None)

    def http_span(self, method: str, app: str, path: str, traceparent: str | None) -> Span:
        """The gateway's server span of one request (its name and attributes are built
        only when spans are recorded: this runs on every request)."""
        if self._tracer is None:
            return self.span("", traceparent)
        return self.span(f"{method} /{app}", traceparent, attributes={
            "http.request.method": method, "url.path": path, "faas.name": app,
            "faas.trigger": "http"})

    def shutdown(self) -> None:
        """Export what is queued (bounded by the exporter's timeout) and stop."""
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = self._tracer = None


class _KindMap(dict):
    def __missing__(self, key: str) -> Any:
        from opentelemetry.trace import SpanKind

        self.update(server=SpanKind.SERVER, consumer=SpanKind.CONSUMER,
                    internal=SpanKind.INTERNAL, producer=SpanKind.PRODUCER)
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
