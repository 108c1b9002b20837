"""Traces: a span per invocation, W3C ``traceparent`` in and out, OTLP/HTTP export.

Export is on when the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (and ``OTEL_SDK_DISABLED`` is not
``true``); sampling follows ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``
(the SDK's default, parent-based always-on, when unset) and the batch queue the
``OTEL_BSP_*`` variables. Off, no SDK is imported and a span is two random ids:
the trace still flows (into the instance, the invocation record, the response
header) at the cost of two ``random.getrandbits``.

Spans are ended on the request path as plain tuples in a bounded queue and
encoded and sent by a thread (:mod:`skiff.observe.spanexport`): an endpoint that
is down or slow costs dropped spans, never a waiting request, reported as one
``skiff:`` warning a minute, not one per batch.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping
from typing import Any

from skiff.observe.spanexport import KINDS, SpanExport

#: W3C Trace Context Level 2's name for the context a server returns.
RESPONSE_HEADER = b"traceresponse"

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

    __slots__ = ("attributes", "export", "kind", "name", "parent", "start_ns")

    def __init__(self, export: SpanExport, name: str, kind: str, parent: str,
                 attributes: dict[str, Any]) -> None:
        self.export, self.name, self.kind, self.parent = export, name, kind, parent
        self.attributes = attributes
        self.start_ns = time.time_ns()

    def finish(self, span: Span, status: int, error: str | None,
               attributes: Mapping[str, Any] | None, end_ns: int | None = None) -> None:
        attrs = self.attributes
        if attributes:
            attrs.update(attributes)
        kind = self.kind
        if kind in _ANSWERING:  # what the invocation answered (not a handler's, a call's)
            attrs["http.response.status_code"] = status
        code, message = 0, ""
        if status >= 500 or error:
            code, message = 2, error or f"status {status}"
            if error:
                attrs["error.type"] = error
        self.export.add((self.name, KINDS[kind], span.trace_id, span.span_id, self.parent,
                         self.start_ns, end_ns or time.time_ns(), attrs, code, message))


_ANSWERING = frozenset({"server", "consumer"})
#: The standard OTEL_TRACES_SAMPLER values decided here (anything else: the SDK's).
_SAMPLERS = frozenset({"always_on", "always_off", "traceidratio", "parentbased_always_on",
                       "parentbased_always_off", "parentbased_traceidratio"})


def ratio_bound(arg: str | None) -> int:
    """TraceIdRatioBased's bound: a trace is sampled when its low 64 bits are below it
    (the SDK's rule, so every Skiff node and SDK agree on a trace). A missing or bad
    ratio is 1.0, as the SDK takes it."""
    try:
        rate = float(arg) if arg else 1.0
    except ValueError:
        rate = 1.0
    if not 0.0 <= rate <= 1.0:
        rate = 1.0
    return round(rate * (1 << 64))


def sampled(sampler: str, bound: int, parent: tuple[str, str, bool] | None,
            trace_id: str) -> bool:
    """The decision of a standard sampler, made before anything else is built: a
    parent-based one follows its parent; a root is always, never, or by ratio."""
    if parent is not None and sampler.startswith("parentbased_"):
        return parent[2]
    root = sampler.removeprefix("parentbased_")
    if root == "always_on":
        return True
    if root == "always_off":
        return False
    return int(trace_id[16:], 16) < bound


class Tracing:
    """Spans of the platform: :meth:`span` starts one; :meth:`shutdown` flushes.

    The sampling decision comes first (the standard samplers are decided here, a
    custom one by the SDK); a sampled span is two ids and a start time until it ends,
    then one tuple for :class:`~skiff.observe.spanexport.SpanExport`, which encodes
    and sends in its own thread. Measured here: the SDK's span objects and exporter
    cost a fifth of warm throughput (see spanexport)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        endpoint = (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                    or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        self.enabled = bool(endpoint) and env.get("OTEL_SDK_DISABLED", "").lower() != "true"
        self.endpoint = endpoint or ""
        self._export: SpanExport | None = None
        if self.enabled:
            self._start(env)

    def _start(self, env: Mapping[str, str]) -> None:
        # imported only when export is on: the SDK costs ~100 ms of imports the platform
        # otherwise never pays
        from opentelemetry.sdk.resources import Resource

        # the sampler follows OTEL_TRACES_SAMPLER / _ARG, read from the process (as the
        # SDK reads them); the default is parentbased_always_on
        self._sampler = os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on")
        self._sampler = self._sampler.strip().lower()
        self._bound = ratio_bound(os.environ.get("OTEL_TRACES_SAMPLER_ARG"))
        self._sdk_sampler = None
        if self._sampler not in _SAMPLERS:  # a custom sampler (an entry point): the SDK's
            from opentelemetry.sdk.trace import TracerProvider

            self._sdk_sampler = TracerProvider().sampler
        resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "skiff")})
        # the signal's own endpoint is used as given; the general one gets /v1/traces
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
            self.endpoint.rstrip("/") + "/v1/traces")
        self._export = SpanExport(endpoint, env, dict(resource.attributes))
        self._export.start()

    def _decide(self, parent: tuple[str, str, bool] | None, trace_id: str, name: str,
                kind: str, attributes: Mapping[str, Any] | None) -> bool:
        if self._sdk_sampler is None:
            return sampled(self._sampler, self._bound, parent, trace_id)
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        context = None
        if parent is not None:
            context = trace.set_span_in_context(trace.NonRecordingSpan(trace.SpanContext(
                int(parent[0], 16), int(parent[1], 16), is_remote=True,
                trace_flags=trace.TraceFlags(1 if parent[2] else 0))))
        return self._sdk_sampler.should_sample(
            context, int(trace_id, 16), name, SpanKind[kind.upper()],
            attributes).decision.is_sampled()

    def span(self, name: str, traceparent: str | None, *, kind: str = "server",
             attributes: Mapping[str, Any] | None = None) -> Span:
        """A span starting now, the child of ``traceparent`` if it is valid (else the
        root of a new trace). ``kind``: server, consumer or internal."""
        parent = parse(traceparent)
        # ids as the SDK's RandomIdGenerator makes them
        span_id = f"{random.getrandbits(64) or 1:016x}"
        trace_id = parent[0] if parent is not None else f"{random.getrandbits(128) or 1:032x}"
        if self._export is None:
            return Span(trace_id, span_id, parent[2] if parent is not None else True)
        if not self._decide(parent, trace_id, name, kind, attributes):
            return Span(trace_id, span_id, False)
        return Span(trace_id, span_id, True, _Recording(
            self._export, name, kind, parent[1] if parent is not None else "",
            dict(attributes or ())))

    @property
    def recording(self) -> bool:
        """Spans are exported (else :meth:`child` is never worth calling)."""
        return self._export is not None

    def child(self, name: str, traceparent: str, *, kind: str = "internal",
              attributes: Mapping[str, Any] | None = None) -> Span | None:
        """A span of the platform's own inside the one ``traceparent`` names (the
        handler's run in the instance, an sdk call): recorded when its parent is, with
        no sampler asked (the decision was made once for the trace). None when
        nothing is recorded."""
        # ``traceparent`` is one of the platform's own spans (never a caller's header):
        # read, not validated
        if self._export is None or len(traceparent) != 55 or traceparent[54] != "1":
            return None
        return Span(traceparent[3:35], f"{random.getrandbits(64) or 1:016x}", True, _Recording(
            self._export, name, kind, traceparent[36:52], dict(attributes or ())))

    def http_span(self, method: str, app: str, path: str, traceparent: str | None) -> Span:
        """The gateway's server span of one request (its name and attributes are built
        only when spans are recorded: this runs on every request)."""
        if self._export is None:
            return self.span("", traceparent)
        return self.span(f"{method} /{app}", traceparent, attributes={
            "http.request.method": method, "url.path": path, "faas.name": app,
            "faas.trigger": "http"})

    def shutdown(self) -> None:
        """Export what is queued (bounded by the exporter's timeout) and stop."""
        if self._export is not None:
            self._export.shutdown()
            self._export = None
