"""Traces on a real server exported over OTLP/HTTP to a local receiver: the gateway's
server span continues the caller's trace, the app runs under it, the response
says it; async and queue deliveries are spans of the trace that sent them."""

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
    seen = resp.json()  # what the app saw: the gateway's span as its parent
    assert seen["traceparent"] == f"00-{trace_id}-{gateway_span}-01"
    assert seen["carrier"] == {"traceparent": seen["traceparent"]}
    assert seen["header"] == seen["traceparent"]
    [span] = _wait_spans(observed, otlp, trace_id, 1)
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
    [span] = _wait_spans(observed, otlp, trace_id, 1)
    assert span.span_id.hex() == span_id and not span.parent_span_id
    assert span.status.code == span.status.STATUS_CODE_ERROR


def test_async_accept_then_delivery(observed: SkiffServer, otlp: OtlpReceiver) -> None:
    """202 from a server span; the delivery is a consumer span, its child."""
    trace_id, parent, traceparent = _caller()
    resp = observed.http.post("/obs-web/", headers={"traceparent": traceparent,
                                                    "x-skiff-invocation-type": "Event"})
    assert resp.status_code == 202
    accept_span = resp.headers["traceresponse"].split("-")[2]
    spans = {s.span_id.hex(): s for s in _wait_spans(observed, otlp, trace_id, 2)}
    accept = spans.pop(accept_span)
    assert accept.kind == PbSpan.SPAN_KIND_SERVER and accept.parent_span_id.hex() == parent
    [delivery] = spans.values()
    assert delivery.kind == PbSpan.SPAN_KIND_CONSUMER
    assert delivery.parent_span_id.hex() == accept_span


def test_queue_delivery_joins_the_senders_trace(observed: SkiffServer,
                                                otlp: OtlpReceiver) -> None:
    trace_id, parent, traceparent = _caller()
    sent = observed.admin.post("/queues/obs-jobs/messages", json={
        "body": {"n": 2}, "attributes": {"traceparent": traceparent}})
    assert sent.status_code == 202
    [span] = _wait_spans(observed, otlp, trace_id, 1)
    assert span.kind == PbSpan.SPAN_KIND_CONSUMER and span.parent_span_id.hex() == parent
    # and the worker ran under that span
    observed.wait_for(lambda: any(f"traceparent=00-{trace_id}-{span.span_id.hex()}-01" in line
                                  for line in observed.lines), "the worker's line")


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
