"""Tracing in-process: W3C traceparent parsing, sampling from OTEL_TRACES_SAMPLER,
and off meaning no SDK at all."""

from __future__ import annotations

import sys

import pytest

from skiff.observe.tracing import Tracing, parse

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

    def on_end(self, span: object) -> None:
        self.ended.append(span)

    def shutdown(self) -> None:
        pass


def _tracing(monkeypatch: pytest.MonkeyPatch, sampler: str, arg: str = "") -> tuple:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    if arg:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    t = Tracing({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"})
    t._processor.shutdown()
    spans = t._processor = _Spans()
    return t, spans


def test_always_on_records_a_child_of_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    t, spans = _tracing(monkeypatch, "always_on")
    span = t.http_span("GET", "hello", "/hello/", f"00-{TRACE}-{SPAN}-01")
    assert span.trace_id == TRACE and span.span_id != SPAN and span.sampled
    span.end(503, "timeout")
    span.end(200)  # once only
    [done] = spans.ended
    assert done.parent.span_id == int(SPAN, 16) and done.context.span_id == int(span.span_id, 16)
    assert done.attributes["http.response.status_code"] == 503
    assert done.attributes["error.type"] == "timeout" and not done.status.is_ok
    assert done.resource.attributes["service.name"] == "skiff"
    assert done.end_time >= done.start_time


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
