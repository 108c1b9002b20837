"""Tracing in-process: W3C traceparent parsing, sampling from OTEL_TRACES_SAMPLER,
and off meaning no SDK at all."""

from __future__ import annotations

import sys

import pytest

from skiff.observe.tracing import Tracing, parse, ratio_bound, sampled

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.mark.parametrize(("value", "parsed"), [
    (f"00-{TRACE}-{SPAN}-01", (TRACE, SPAN, True)),
    (f"00-{TRACE}-{SPAN}-00", (TRACE, SPAN, False)),
    (f"00-{TRACE.upper()}-{SPAN}-01", (TRACE, SPAN, True)),
    (f"01-{TRACE}-{SPAN}-01-future", (TRACE, SPAN, True)),  # a later version: what it knows
    (f"00-{TRACE}-{SPAN}-01-extra", None),  # version 00 has exactly four fields
    (f"ff-{TRACE}-{SPAN}-01", None),
    (f"00-{'0' * 32}-{SPAN}-01", None),
    (f"00-{TRACE}-{'0' * 16}-01", None),
    (f"00-{TRACE[:-1]}g-{SPAN}-01", None),
    ("garbage", None), ("", None), (None, None),
])
def test_parse(value: str | None, parsed: tuple | None) -> None:
    assert parse(value) == parsed


class _Spans:
    def __init__(self) -> None:
        self.ended: list = []

    def add(self, rec: tuple) -> None:
        self.ended.append(dict(zip(("name", "kind", "trace_id", "span_id", "parent", "start",
                                    "end", "attributes", "code", "message"), rec, strict=True)))

    def shutdown(self) -> None:
        pass


def _tracing(monkeypatch: pytest.MonkeyPatch, sampler: str, arg: str = "") -> tuple:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    if arg:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    t = Tracing({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"})
    t._export.shutdown()
    spans = t._export = _Spans()
    return t, spans


def test_always_on_records_a_child_of_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    t, spans = _tracing(monkeypatch, "always_on")
    span = t.http_span("GET", "hello", "/hello/", f"00-{TRACE}-{SPAN}-01")
    assert span.trace_id == TRACE and span.span_id != SPAN and span.sampled
    span.end(503, "timeout")
    span.end(200)  # once only
    [done] = spans.ended
    assert done["parent"] == SPAN and done["span_id"] == span.span_id
    assert done["kind"] == 2  # OTLP's SERVER
    assert done["attributes"]["http.response.status_code"] == 503
    assert done["attributes"]["error.type"] == "timeout"
    assert (done["code"], done["message"]) == (2, "timeout")
    assert done["end"] >= done["start"]


def test_a_child_joins_its_parent_and_keeps_the_times_it_is_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    t, spans = _tracing(monkeypatch, "always_on")
    server = t.span("GET /a", None)
    handler = t.child("a handler", server.traceparent, attributes={"faas.name": "a"})
    assert handler is not None and handler.trace_id == server.trace_id
    handler.end(500, "handler_error", start_ns=10, end_ns=20)
    [done] = spans.ended
    assert done["parent"] == server.span_id and done["kind"] == 1  # INTERNAL
    assert (done["start"], done["end"]) == (10, 20)
    assert "http.response.status_code" not in done["attributes"]  # not what it answered
    assert done["code"] == 2
    unsampled = f"00-{TRACE}-{SPAN}-00"
    assert t.child("x", unsampled) is None and Tracing({}).child("x", server.traceparent) is None


@pytest.mark.parametrize(("sampler", "arg", "parent", "trace_id", "want"), [
    ("always_on", "", None, TRACE, True),
    ("always_on", "", (TRACE, SPAN, False), TRACE, True),  # not parent-based
    ("always_off", "", (TRACE, SPAN, True), TRACE, False),
    ("parentbased_always_on", "", (TRACE, SPAN, False), TRACE, False),
    ("parentbased_always_on", "", None, TRACE, True),
    ("parentbased_always_off", "", (TRACE, SPAN, True), TRACE, True),
    ("parentbased_always_off", "", None, TRACE, False),
    # the ratio compares the trace id's low 64 bits with rate * 2**64, as the SDK does
    ("traceidratio", "0.5", None, "f" * 16 + "7" + "f" * 15, True),
    ("traceidratio", "0.5", None, "0" * 16 + "8" + "0" * 15, False),
    ("traceidratio", "0", None, "0" * 31 + "1", False),
    ("traceidratio", "bad", None, "f" * 32, True),  # a bad ratio is 1.0
    ("parentbased_traceidratio", "0", (TRACE, SPAN, True), TRACE, True),
    ("parentbased_traceidratio", "0", None, TRACE, False),
])
def test_samplers(sampler: str, arg: str, parent: tuple | None, trace_id: str,
                  want: bool) -> None:
    assert sampled(sampler, ratio_bound(arg), parent, trace_id) is want


def test_the_ratio_agrees_with_the_sdk() -> None:
    import random

    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    sdk = TraceIdRatioBased(0.25)
    for _ in range(2000):
        trace_id = random.getrandbits(128) or 1
        want = sdk.should_sample(None, trace_id, "x").decision.is_sampled()
        assert sampled("traceidratio", ratio_bound("0.25"), None, f"{trace_id:032x}") is want


def test_always_off_and_ratio_zero_record_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for sampler, arg in (("always_off", ""), ("traceidratio", "0")):
        t, spans = _tracing(monkeypatch, sampler, arg)
        span = t.http_span("GET", "hello", "/", None)
        assert not span.sampled and span.traceparent.endswith("-00")
        span.end(200)
        assert spans.ended == []


def test_parent_based_follows_an_unsampled_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    t, spans = _tracing(monkeypatch, "parentbased_always_on")
    span = t.http_span("GET", "hello", "/", f"00-{TRACE}-{SPAN}-00")
    span.end(200)
    assert not span.sampled and spans.ended == []


def test_off_imports_no_sdk() -> None:
    """No endpoint: spans are ids only, the SDK is never imported."""
    import subprocess

    code = ("import sys; from skiff.observe import Tracing; t = Tracing({}); "
            "s = t.http_span('GET', 'a', '/', None); s.end(200); "
            "print(len(s.trace_id), any(m.startswith('opentelemetry') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["32", "False"]
