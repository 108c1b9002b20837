"""W3C Trace Context carried through the event plane.

A trace that starts at an HTTP request must survive the hops through queues,
rules and cron ticks, so every message keeps ``traceparent`` (and
``tracestate``) among its attributes, under the same names the CloudEvents
distributed-tracing extension and OpenTelemetry use. A consumer continues the
trace with :meth:`TraceContext.child`; handlers that expect AWS see it as
``AWSTraceHeader`` (X-Ray format) in SQS records.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str
    sampled: bool = True

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def child(self) -> TraceContext:
        """The same trace, a new span: what a hop (consumer, handler) records under."""
        return TraceContext(self.trace_id, _new_span_id(), self.sampled)

    def xray_header(self) -> str:
        """The context as an X-Ray ``AWSTraceHeader`` (Root=1-<8 hex>-<24 hex>)."""
        return (f"Root=1-{self.trace_id[:8]}-{self.trace_id[8:]};Parent={self.span_id};"
                f"Sampled={int(self.sampled)}")


def new_trace(*, sampled: bool = True) -> TraceContext:
    """A fresh trace, for an entry point that received none."""
    while (trace_id := secrets.token_hex(16)) == "0" * 32:
        pass
    return TraceContext(trace_id, _new_span_id(), sampled)


def parse_traceparent(value: str | None) -> TraceContext | None:
    """The context in a ``traceparent`` value; None if absent or invalid (the W3C
    rule: an invalid header is ignored and a new trace started)."""
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if not match:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} \
            or set(span_id) == {"0"}:
        return None
    return TraceContext(trace_id, span_id, bool(int(flags, 16) & 1))


def extract(attributes: Mapping[str, str] | None) -> TraceContext | None:
    """The trace context of a message's attributes (or a CloudEvent's), if any."""
    return parse_traceparent((attributes or {}).get(TRACEPARENT))


def inject(attributes: Mapping[str, str] | None, context: TraceContext,
           tracestate: str | None = None) -> dict[str, str]:
    """A copy of ``attributes`` carrying ``context`` (and ``tracestate`` if given)."""
    out = dict(attributes or {})
    out[TRACEPARENT] = context.traceparent
    if tracestate:
        out[TRACESTATE] = tracestate
    return out


def _new_span_id() -> str:
    while (span_id := secrets.token_hex(8)) == "0" * 16:
        pass
    return span_id
