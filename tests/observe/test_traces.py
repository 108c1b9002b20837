"""Traces on a real server exported over OTLP/HTTP to a local receiver: the gateway's
server span continues the caller's trace, the handler's run in the instance is its
child (emitted by the gateway), the app runs under that, its skiff.sdk calls are
the handler's children, the response says the trace; async and queue deliveries
are spans of the trace that sent them; egress connections are client spans of the
handler that made them; a published event's fan-out is a span per rule target."""

from __future__ import annotations

import secrets
import time

from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from tests.conftest import SkiffServer
from tests.observe.conftest import APPS, OtlpReceiver


def _caller() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def _wait_spans(server: SkiffServer, otlp: OtlpReceiver, trace_id: str, n: int) -> list:
    return server.wait_for(lambda: len(s := otlp.by_trace(trace_id)) >= n and s,
                           f"{n} span(s) of trace {trace_id}")


def test_gateway_span_continues_the_callers_trace(observed: SkiffServer,
                                                  otlp: OtlpReceiver) -> None:
    trace_id, parent, traceparent = _caller()
    resp = observed.http.get("/obs-web/", headers={"traceparent": traceparent})
    assert resp.status_code == 200
    version, got_trace, gateway_span, flags = resp.headers["traceresponse"].split("-")
    assert (version, got_trace, flags) == ("00", trace_id, "01")
    assert gateway_span != parent
    spans = {s.span_id.hex(): s for s in _wait_spans(observed, otlp, trace_id, 2)}
    span = spans.pop(gateway_span)
    [handler] = spans.values()
    seen = resp.json()  # what the app saw: the handler span as its parent
    assert seen["traceparent"] == f"00-{trace_id}-{handler.span_id.hex()}-01"
    assert seen["carrier"] == {"traceparent": seen["traceparent"]}
    assert seen["header"] == seen["traceparent"]
    assert handler.kind == PbSpan.SPAN_KIND_INTERNAL and handler.name == "obs-web handler"
    assert handler.parent_span_id.hex() == gateway_span
    # inside the server span, timed by the instance (not the whole request)
    assert span.start_time_unix_nano <= handler.start_time_unix_nano
    assert handler.start_time_unix_nano <= handler.end_time_unix_nano <= span.end_time_unix_nano
    assert span.kind == PbSpan.SPAN_KIND_SERVER
    assert span.span_id.hex() == gateway_span
    assert span.parent_span_id.hex() == parent
    attrs = {a.key: a.value for a in span.attributes}
    assert attrs["http.response.status_code"].int_value == 200
    assert attrs["faas.name"].string_value == "obs-web"
    services = {svc.get("service.name") for svc, s in otlp.spans if s.trace_id.hex() == trace_id}
    assert services == {"skiff-observe-tests"}  # OTEL_SERVICE_NAME


def test_a_request_without_traceparent_starts_a_trace(observed: SkiffServer,
                                                      otlp: OtlpReceiver) -> None:
    resp = observed.http.get("/obs-web/", params={"fail": "1"})
    assert resp.status_code == 500
    _, trace_id, span_id, _ = resp.headers["traceresponse"].split("-")
    spans = {s.span_id.hex(): s for s in _wait_spans(observed, otlp, trace_id, 2)}
    span = spans.pop(span_id)
    assert not span.parent_span_id
    assert span.status.code == span.status.STATUS_CODE_ERROR
    [handler] = spans.values()  # the handler raised: its span says so
    assert handler.parent_span_id.hex() == span_id
    assert handler.status.code == handler.status.STATUS_CODE_ERROR
    attrs = {a.key: a.value for a in handler.attributes}
    assert attrs["error.type"].string_value == "handler_error"


def test_sdk_calls_are_children_of_the_handler(observed: SkiffServer,
                                               otlp: OtlpReceiver) -> None:
    """A KV increment and a queue send from the handler are client spans under its
    handler span; the queue's delivery (and the worker's handler) follows the send."""
    trace_id, _, traceparent = _caller()
    resp = observed.http.get("/obs-web/", params={"sdk": "1"},
                             headers={"traceparent": traceparent})
    assert resp.status_code == 200
    gateway_span = resp.headers["traceresponse"].split("-")[2]
    # server, handler, kv.incr, queue.send; then the delivery and the worker's handler
    spans = _wait_spans(observed, otlp, trace_id, 6)
    by_name = {s.name: s for s in spans}
    handler = by_name["obs-web handler"]
    assert handler.parent_span_id.hex() == gateway_span
    incr, send = by_name["skiff.sdk kv.incr"], by_name["skiff.sdk queue.send"]
    for call in (incr, send):
        assert call.kind == PbSpan.SPAN_KIND_CLIENT
        assert call.parent_span_id.hex() == handler.span_id.hex()
        assert handler.start_time_unix_nano <= call.start_time_unix_nano
    attrs = {a.key: a.value.string_value for a in send.attributes}
    assert attrs["messaging.destination.name"] == "obs-jobs"
    delivery = by_name["queue obs-worker"]
    assert delivery.kind == PbSpan.SPAN_KIND_CONSUMER
    assert delivery.parent_span_id.hex() == send.span_id.hex()
    assert by_name["obs-worker handler"].parent_span_id.hex() == delivery.span_id.hex()


def test_async_accept_then_delivery(observed: SkiffServer, otlp: OtlpReceiver) -> None:
    """202 from a server span; the delivery is a consumer span, its child."""
    trace_id, parent, traceparent = _caller()
    resp = observed.http.post("/obs-web/", headers={"traceparent": traceparent,
                                                    "x-skiff-invocation-type": "Event"})
    assert resp.status_code == 202
    accept_span = resp.headers["traceresponse"].split("-")[2]
    spans = {s.span_id.hex(): s for s in _wait_spans(observed, otlp, trace_id, 3)}
    accept = spans.pop(accept_span)
    assert accept.kind == PbSpan.SPAN_KIND_SERVER and accept.parent_span_id.hex() == parent
    [delivery] = [s for s in spans.values() if s.kind == PbSpan.SPAN_KIND_CONSUMER]
    assert delivery.parent_span_id.hex() == accept_span
    [handler] = [s for s in spans.values() if s.kind == PbSpan.SPAN_KIND_INTERNAL]
    assert handler.parent_span_id.hex() == delivery.span_id.hex()


def test_queue_delivery_joins_the_senders_trace(observed: SkiffServer,
                                                otlp: OtlpReceiver) -> None:
    trace_id, parent, traceparent = _caller()
    sent = observed.admin.post("/queues/obs-jobs/messages", json={
        "body": {"n": 2}, "attributes": {"traceparent": traceparent}})
    assert sent.status_code == 202
    spans = _wait_spans(observed, otlp, trace_id, 2)
    [span] = [s for s in spans if s.kind == PbSpan.SPAN_KIND_CONSUMER]
    assert span.parent_span_id.hex() == parent
    [handler] = [s for s in spans if s.kind == PbSpan.SPAN_KIND_INTERNAL]
    assert handler.parent_span_id.hex() == span.span_id.hex()
    # and the worker ran under its handler span
    observed.wait_for(lambda: any(f"traceparent=00-{trace_id}-{handler.span_id.hex()}-01"
                                  in line for line in observed.lines), "the worker's line")


def _attrs(span: PbSpan) -> dict:
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}


def test_egress_connections_are_spans_of_the_handler(observed: SkiffServer, otlp: OtlpReceiver,
                                                     upstream: int) -> None:
    """An allowed connection and a denied one, each a client span under the handler
    span of the request that made it (found by the instance, not by anything the app
    sent), with what it moved and why it was denied."""
    trace_id, _, traceparent = _caller()
    ok = observed.http.get("/obs-egress/", params={"url": f"http://127.0.0.1:{upstream}/"},
                           headers={"traceparent": traceparent})
    assert ok.json() == {"status": 200, "body": "hello from the upstream"}
    by_name = {s.name: s for s in _wait_spans(observed, otlp, trace_id, 3)}
    handler, egress = by_name["obs-egress handler"], by_name[f"egress 127.0.0.1:{upstream}"]
    assert egress.kind == PbSpan.SPAN_KIND_CLIENT
    assert egress.parent_span_id == handler.span_id
    assert handler.start_time_unix_nano <= egress.start_time_unix_nano <= egress.end_time_unix_nano
    attrs = _attrs(egress)
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == upstream
    assert attrs["skiff.egress.allowed"] is True and attrs["skiff.egress.reason"] == "closed"
    assert attrs["skiff.egress.bytes_up"] > 0 and attrs["skiff.egress.bytes_down"] > 0
    assert egress.status.code != egress.status.STATUS_CODE_ERROR

    trace_id, _, traceparent = _caller()
    denied = observed.http.get("/obs-egress/", params={"url": "http://denied.example/"},
                               headers={"traceparent": traceparent})
    assert denied.json()["status"] == 403
    by_name = {s.name: s for s in _wait_spans(observed, otlp, trace_id, 3)}
    handler, egress = by_name["obs-egress handler"], by_name["egress denied.example:80"]
    assert egress.parent_span_id == handler.span_id
    attrs = _attrs(egress)
    assert attrs["skiff.egress.allowed"] is False and attrs["skiff.egress.reason"] == "not_allowed"
    assert attrs["faas.name"] == "obs-egress"
    assert egress.status.code == egress.status.STATUS_CODE_ERROR
    assert attrs["error.type"] == "not_allowed"


def test_a_rule_fan_out_is_a_span_per_target(observed: SkiffServer, otlp: OtlpReceiver) -> None:
    """obs-web publishes an event two apps' rules match: the publish is a producer span
    under the sdk call, with a fan-out span per target, each the parent of that
    target's delivery (and so of its handler)."""
    trace_id, _, traceparent = _caller()
    resp = observed.http.get("/obs-web/", params={"publish": "1"},
                             headers={"traceparent": traceparent})
    assert resp.status_code == 200
    # server, handler, sdk call, publish, 2 fan-outs, 2 deliveries, 2 handlers
    spans = _wait_spans(observed, otlp, trace_id, 10)
    by_name = {s.name: s for s in spans}
    call = by_name["skiff.sdk events.publish"]
    assert call.parent_span_id == by_name["obs-web handler"].span_id
    publish = by_name["publish obs.fanout"]
    assert publish.kind == PbSpan.SPAN_KIND_PRODUCER and publish.parent_span_id == call.span_id
    assert _attrs(publish)["messaging.batch.message_count"] == 2
    for app in ("obs-worker", "obs-egress"):
        fan = by_name[f"fan-out {app}"]
        assert fan.kind == PbSpan.SPAN_KIND_PRODUCER and fan.parent_span_id == publish.span_id
        assert _attrs(fan)["messaging.destination.name"].startswith(f"skiff:rule:{app}:")
        delivery = by_name[f"event {app}"]
        assert delivery.kind == PbSpan.SPAN_KIND_CONSUMER
        assert delivery.parent_span_id == fan.span_id
        assert by_name[f"{app} handler"].parent_span_id == delivery.span_id


def test_an_otlp_endpoint_that_is_down_drops_spans(tmp_path, envs_dir) -> None:  # noqa: ANN001
    """Nothing listens at the endpoint: every request is served, and the export
    failures are one warning (a minute) per signal, not one per batch."""
    server = SkiffServer(tmp_path / "home", [APPS / "obs-web"], envs_dir, env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # discard: refused
        "OTEL_BSP_SCHEDULE_DELAY": "20", "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "OTEL_METRIC_EXPORT_INTERVAL": "20", "SKIFF_ACCESS_LOG": "0"})
    try:
        for _ in range(30):
            assert server.http.get("/obs-web/").status_code == 200
            time.sleep(0.02)  # spread over several export batches
        server.wait_for(lambda: any(line.startswith("skiff: traces") for line in server.lines),
                        "the export warning")
        for _ in range(30):
            assert server.http.get("/obs-web/").status_code == 200
        time.sleep(1.5)  # more failed exports would have been printed by now
        warned = [line for line in server.lines if line.startswith("skiff: traces")]
        assert len(warned) == 1, warned
        assert "\n" not in warned[0]
        warned = [line for line in server.lines if line.startswith("skiff: metrics")]
        assert len(warned) == 1, warned
        assert "http://127.0.0.1:9/v1/metrics" in warned[0] and "figures are kept" in warned[0]
    finally:
        server.stop()
