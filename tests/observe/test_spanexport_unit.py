"""The span export in-process: the protobuf it writes by hand decodes, with
opentelemetry-proto, to exactly the spans it was given; a full queue and a failing
endpoint drop spans with one warning a minute (a clock the test moves)."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from skiff.observe.spanexport import Encoder, SpanExport

TRACE, SPAN, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "a3ce929d0e0e4736"


def _decode(body: bytes) -> tuple[dict, list]:
    req = ExportTraceServiceRequest.FromString(body)
    [rs] = req.resource_spans
    [ss] = rs.scope_spans
    resource = {a.key: a.value.string_value for a in rs.resource.attributes}
    assert ss.scope.name == "skiff"
    return resource, list(ss.spans)


def test_what_is_written_decodes_to_the_spans_given() -> None:
    enc = Encoder({"service.name": "svc", "telemetry.sdk.language": "python"})
    recs = [
        ("GET /a", 2, TRACE, SPAN, PARENT, 1_000, 2_500, {
            "http.request.method": "GET", "url.path": "/a/ü" * 40, "faas.coldstart": False,
            "http.response.status_code": 200, "ratio": 0.5, "neg": -3,
            "odd": "\udcff"}, 0, ""),  # a lone surrogate (a path decoded with surrogateescape)
        ("a handler", 1, TRACE, PARENT, "", 1 << 62, (1 << 63) + 7, {}, 2, "handler_error"),
    ] * 2  # twice: the second time the attributes come from the cache
    resource, spans = _decode(enc.request(recs))
    assert resource == {"service.name": "svc", "telemetry.sdk.language": "python"}
    assert len(spans) == 4
    first, second = spans[0], spans[1]
    assert first == spans[2] and second == spans[3]
    assert (first.trace_id.hex(), first.span_id.hex(), first.parent_span_id.hex()) == (
        TRACE, SPAN, PARENT)
    assert first.name == "GET /a" and first.kind == PbSpan.SPAN_KIND_SERVER
    assert (first.start_time_unix_nano, first.end_time_unix_nano) == (1_000, 2_500)
    attrs = {a.key: a.value for a in first.attributes}
    assert attrs["url.path"].string_value == "/a/ü" * 40  # a length over 127: two-byte varint
    assert attrs["faas.coldstart"].HasField("bool_value") and not attrs["faas.coldstart"].bool_value
    assert attrs["http.response.status_code"].int_value == 200
    assert attrs["ratio"].double_value == 0.5
    assert attrs["neg"].int_value == -3
    assert attrs["odd"].string_value == "?"  # valid UTF-8 on the wire, always
    assert not first.HasField("status")
    assert second.parent_span_id == b"" and second.kind == PbSpan.SPAN_KIND_INTERNAL
    assert second.end_time_unix_nano == (1 << 63) + 7
    assert second.status.code == second.status.STATUS_CODE_ERROR
    assert second.status.message == "handler_error"


def _export(post, clock, warned, **env: str) -> SpanExport:  # noqa: ANN001
    return SpanExport("http://collector/v1/traces", env, {"service.name": "t"}, post=post,
                      clock=clock, warn=warned.append)


def test_batches_and_a_failing_endpoint_warns_once_a_minute() -> None:
    now, warned, bodies = [0.0], [], []

    def post(body: bytes) -> str | None:
        bodies.append(body)
        return "ConnectError: refused"

    export = _export(post, lambda: now[0], warned, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="2")
    rec = ("s", 2, TRACE, SPAN, "", 1, 2, {}, 0, "")
    for _ in range(5):
        export.add(rec)
    export.send()  # three batches (2, 2, 1), each refused
    assert [len(_decode(b)[1]) for b in bodies] == [2, 2, 1]
    assert len(warned) == 1
    assert "export to http://collector/v1/traces failed: ConnectError: refused" in warned[0]
    assert warned[0].startswith("skiff: traces (spans are dropped, requests go on)")
    now[0] = 61.0
    export.add(rec)
    export.send()
    assert len(warned) == 2 and "(2 similar messages left out)" in warned[1]


def test_a_full_queue_drops_new_spans() -> None:
    warned: list[str] = []
    sent: list[int] = []
    export = _export(lambda body: sent.append(len(_decode(body)[1])), lambda: 0.0, warned,
                     OTEL_BSP_MAX_QUEUE_SIZE="3")
    for i in range(5):
        export.add(("s", 2, TRACE, f"{i + 1:016x}", "", 1, 2, {}, 0, ""))
    export.send()
    assert sent == [3]
    assert len(warned) == 1 and "queue of 3 spans was full (2 spans dropped)" in warned[0]
