"""Spans out of the gateway: the request path appends plain tuples to a bounded
queue; a thread of its own encodes them as an OTLP/HTTP protobuf request and posts it.

Why not the SDK's ``BatchSpanProcessor`` and ``OTLPSpanExporter``: every span of
the gateway is spent on the one core it shares with the instances, and the SDK's
path cost, per span, a ``ReadableSpan`` and two ``SpanContext`` objects on the
request path and ~25 µs of encoding in its thread (its encoder builds a protobuf
object per attribute). With a span per request and one per handler run, tracing
every request cost 21 % of warm throughput (BENCHMARKS.md). Here a span is one
tuple, and the thread writes the protobuf wire format directly (a span's fields
and its attributes; an attribute's bytes are cached, as the same ``faas.name`` or
method repeats on every span). Measured in
one run on this machine (loaded): 27 µs a span with protobuf objects built, 11 µs
written directly, 94 µs through the SDK. ``tests/observe/test_spanexport_unit.py``
decodes what this writes with opentelemetry-proto.

Bounded as the SDK's processor is (``OTEL_BSP_MAX_QUEUE_SIZE`` 2048 spans queued,
``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` 512 a request, every ``OTEL_BSP_SCHEDULE_DELAY``
ms or as soon as a batch is full); the OTLP exporter's variables are honoured
(``OTEL_EXPORTER_OTLP[_TRACES]_HEADERS``, ``_TIMEOUT`` in seconds, ``_COMPRESSION``
gzip, ``_CERTIFICATE``). A full queue drops the new span; a failed post drops its
batch (no retries: the next batch is already waiting); both are reported as one
``skiff: traces`` warning a minute, never on the request path.
"""

from __future__ import annotations

import collections
import gzip
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from skiff.logtext import one_line

#: (name, kind, trace id, span id, parent span id or "", start ns, end ns, attributes,
#: status code (0 unset, 2 error), status message): what the request path keeps.
SpanRecord = tuple[str, int, str, str, str, int, int, dict, int, str]
#: OTLP's SpanKind numbers.
KINDS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
#: Warnings (an endpoint that is down fails every batch) at most this often.
WARN_EVERY_SECONDS = 60.0
_MAX_CACHED_ATTRIBUTES = 4096  # url paths and ids vary: the cache is cleared when full

_Q = struct.Struct("<Q").pack
_fromhex = bytes.fromhex


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field: its tag byte(s), the length, the bytes."""
    return tag + _varint(len(data)) + data


def _any_value(v: Any) -> Any:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    return AnyValue(string_value=str(v))


_D = struct.Struct("<d").pack


def _value(v: Any) -> bytes:
    """An AnyValue: string (1), bool (2), int64 (3, two's complement), double (4)."""
    if isinstance(v, bool):
        return b"\x10\x01" if v else b"\x10\x00"
    if isinstance(v, int):
        return b"\x18" + _varint(v & 0xFFFFFFFFFFFFFFFF)
    if isinstance(v, float):
        return b"\x21" + _D(v)
    return _field(b"\x0a", str(v).encode("utf-8", "replace"))


def key_values(attributes: Mapping[str, Any]) -> list:
    """Attributes as opentelemetry-proto KeyValue messages (for the resource)."""
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    return [KeyValue(key=k, value=_any_value(v)) for k, v in attributes.items()]


class Encoder:
    """OTLP ``ExportTraceServiceRequest`` bytes from :data:`SpanRecord` tuples."""

    def __init__(self, resource: Mapping[str, Any], scope: str = "skiff") -> None:
        from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
        from opentelemetry.proto.resource.v1.resource_pb2 import Resource

        # ResourceSpans field 1, ScopeSpans field 1: written once
        self._resource = _field(b"\x0a", Resource(
            attributes=key_values(resource)).SerializeToString())
        self._scope = _field(b"\x0a", InstrumentationScope(name=scope).SerializeToString())
        self._attrs: dict[tuple[str, type, Any], bytes] = {}

    def _attribute(self, key: str, value: Any) -> bytes:
        """Span field 9 (attributes): one KeyValue, cached (most repeat on every span)."""
        cached = self._attrs.get((key, type(value), value))
        if cached is None:
            if len(self._attrs) >= _MAX_CACHED_ATTRIBUTES:
                self._attrs.clear()
            cached = self._attrs[(key, type(value), value)] = _field(
                b"\x4a", _field(b"\x0a", key.encode()) + _field(b"\x12", _value(value)))
        return cached

    def span(self, rec: SpanRecord) -> bytes:
        """One ``Span`` message (ScopeSpans field 2, framed)."""
        name, kind, trace_id, span_id, parent, start, end, attrs, code, message = rec
        attribute = self._attribute
        parts = [b"\x0a\x10", _fromhex(trace_id), b"\x12\x08", _fromhex(span_id)]
        if parent:
            parts += (b"\x22\x08", _fromhex(parent))
        parts += (_field(b"\x2a", name.encode("utf-8", "replace")), b"\x30", _varint(kind),
                  b"\x39", _Q(start), b"\x41", _Q(end))
        parts += [attribute(k, v) for k, v in attrs.items()]
        if code:  # Status: message (2), code (3)
            status = _field(b"\x12", message.encode("utf-8", "replace")) + b"\x18" + _varint(code)
            parts.append(_field(b"\x7a", status))
        return _field(b"\x12", b"".join(parts))

    def request(self, records: Iterable[SpanRecord]) -> bytes:
        scope_spans = self._scope + b"".join(map(self.span, records))
        resource_spans = self._resource + _field(b"\x12", scope_spans)
        return _field(b"\x0a", resource_spans)


class SpanExport:
    """The queue the request path adds to, and the thread that sends it."""

    def __init__(self, endpoint: str, environ: Mapping[str, str], resource: Mapping[str, Any],
                 *, post: Callable[[bytes], str | None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 warn: Callable[[str], None] | None = None) -> None:
        env = environ
        self.endpoint = endpoint
        self._encoder = Encoder(resource)
        self._delay = max(0.001, _number(env, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000)
        self._max_queue = int(_number(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048))
        self._batch = max(1, min(int(_number(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)),
                                 self._max_queue))
        self._queue: collections.deque[SpanRecord] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._post = post or _Poster(endpoint, env)
        self._clock = clock
        self._warn = warn or _stderr
        self._next_warning = 0.0
        self._left_out = 0
        self.dropped = 0  # spans a full queue refused since the last warning
        self._thread: threading.Thread | None = None

    def add(self, rec: SpanRecord) -> None:
        """The request path's part: an append (no lock: a deque's is atomic)."""
        queue = self._queue
        if len(queue) >= self._max_queue:
            self.dropped += 1
            return
        queue.append(rec)
        if len(queue) == self._batch:
            self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="skiff-otlp-spans",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._delay)
            self._wake.clear()
            self.send()

    def send(self) -> None:
        """Everything queued, batch after batch (the thread's work; a test may call it)."""
        queue, n = self._queue, self._batch
        while queue:
            batch = [queue.popleft() for _ in range(min(n, len(queue)))]
            try:
                why = self._post(self._encoder.request(batch))
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any batch
                why = f"{type(exc).__name__}: {exc}"
            if why:
                self._failed(f"{why} ({len(batch)} spans dropped)")
        if self.dropped:
            n, self.dropped = self.dropped, 0
            self._failed(f"the queue of {self._max_queue} spans was full ({n} spans dropped)")

    def _failed(self, why: str) -> None:
        now = self._clock()
        if now < self._next_warning:
            self._left_out += 1
            return
        self._next_warning = now + WARN_EVERY_SECONDS
        more = f" ({self._left_out} similar messages left out)" if self._left_out else ""
        self._left_out = 0
        self._warn(one_line(f"skiff: traces (spans are dropped, requests go on): export to "
                            f"{self.endpoint} failed: {why}{more}"))

    def shutdown(self) -> None:
        """Send what is queued (bounded by the post's timeout) and stop."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.send()
        close = getattr(self._post, "close", None)
        if close is not None:
            close()


class _Poster:
    """POST one request to the OTLP/HTTP endpoint; returns why it failed, or None."""

    def __init__(self, endpoint: str, env: Mapping[str, str]) -> None:
        import httpx
        from opentelemetry.util.re import parse_env_headers

        def var(name: str) -> str:
            return (env.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}")
                    or env.get(f"OTEL_EXPORTER_OTLP_{name}") or "")

        self._url = endpoint
        self._gzip = var("COMPRESSION").strip().lower() == "gzip"
        headers = parse_env_headers(var("HEADERS"), liberal=True)
        headers["content-type"] = "application/x-protobuf"
        if self._gzip:
            headers["content-encoding"] = "gzip"
        try:
            timeout = float(var("TIMEOUT") or 10)
        except ValueError:
            timeout = 10.0
        self._client = httpx.Client(headers=headers, timeout=timeout,
                                    verify=var("CERTIFICATE") or True)

    def __call__(self, body: bytes) -> str | None:
        import httpx

        try:
            resp = self._client.post(self._url, content=gzip.compress(body) if self._gzip
                                     else body)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if resp.status_code >= 300:
            return f"HTTP {resp.status_code} {resp.text[:200]}"
        return None

    def close(self) -> None:
        self._client.close()


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return max(0.0, float(env[name]))
    except (KeyError, ValueError):
        return default


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
