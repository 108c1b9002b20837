"""Egress and fan-out spans in-process: which handler span an egress connection is
put under (only an unambiguous one), what its span says, the peer pid the kernel
gives a unix socket, and a publish's producer and per-target spans."""

from __future__ import annotations

import asyncio
import os
import socket
from types import SimpleNamespace

import pytest

from skiff.egress import EgressEvent
from skiff.egress.proxy import peer_pid
from skiff.observe.tracing import Tracing
from skiff.platform.busspans import PublishSpans
from skiff.platform.egressspans import EgressSpans, parent_of_requests
from tests.observe.test_tracing_unit import _Spans

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
HANDLER = f"00-{TRACE}-00f067aa0ba902b7-01"


@pytest.mark.parametrize(("requests", "parent"), [
    ([], ""),                          # between requests (a background thread)
    (["r1"], HANDLER),                 # the one request the instance serves
    (["r1", "r2"], ""),                # ASGI concurrency: ambiguous, no guess
    (["untraced"], ""),                # serving one the gateway does not trace
])
def test_parent_of_requests(requests: list[str], parent: str) -> None:
    assert parent_of_requests(requests, {"r1": HANDLER, "r2": HANDLER}.get) == parent


def _tracing(monkeypatch: pytest.MonkeyPatch) -> tuple[Tracing, _Spans]:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    t = Tracing({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"})
    t._export.shutdown()
    spans = t._export = _Spans()
    return t, spans


def _platform(monkeypatch: pytest.MonkeyPatch, **ppids: int) -> tuple[EgressSpans, _Spans]:
    one = SimpleNamespace(pid=100, requests=lambda: {"r1"})
    busy = SimpleNamespace(pid=200, requests=lambda: {"r2", "r3"})
    draining = SimpleNamespace(pid=300, requests=lambda: {"r3"})
    pool = SimpleNamespace(instances=[one, busy], draining=[draining])
    registry = SimpleNamespace(apps={"shop": SimpleNamespace(pool=pool)})
    tracing, spans = _tracing(monkeypatch)
    handlers = {"r1": HANDLER, "r2": HANDLER, "r3": f"00-{TRACE}-{'1' * 16}-01"}
    return EgressSpans(registry, tracing, handlers.get,  # type: ignore[arg-type]
                       ppid=lambda pid: ppids.get(str(pid))), spans


def test_the_parent_is_found_by_the_kernels_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The instance's own pid, or a process it started; never another app's instance,
    a busy instance, or a pid of nobody's."""
    spans, _ = _platform(monkeypatch, **{"101": 100, "102": 101, "999": 1})
    assert spans.parent_of("shop", 100) == HANDLER
    assert spans.parent_of("shop", 102) == HANDLER            # a grandchild of instance 100
    assert spans.parent_of("shop", 300) == f"00-{TRACE}-{'1' * 16}-01"  # draining, still serving
    assert spans.parent_of("shop", 200) == ""                 # two requests at once
    assert spans.parent_of("shop", 999) == ""                 # no instance of the app
    assert spans.parent_of("other", 100) == ""                # not that app's instance
    assert spans.parent_of("shop", None) == ""                # TCP: the kernel says nothing


def _event(**kw: object) -> EgressEvent:
    base = dict(app="shop", host="api.example", port=443, allowed=True, rule="api.example",
                reason="closed", bytes_up=10, bytes_down=20, duration_ms=5.0, ts=1000.0,
                address="203.0.113.7", traceparent=HANDLER)
    return EgressEvent(**{**base, **kw})  # type: ignore[arg-type]


def test_an_egress_span(monkeypatch: pytest.MonkeyPatch) -> None:
    spans, out = _platform(monkeypatch)
    spans.after_egress(_event())
    spans.after_egress(_event(allowed=False, reason="not_allowed", rule="evil.example",
                              host="evil.example", bytes_up=0, bytes_down=0, traceparent="",
                              address=None))
    spans.after_egress(_event(host="", reason="too_many_connections", allowed=False))
    ok, denied = out.ended  # a cap refusal (no destination) is no span
    assert ok["name"] == "egress api.example:443" and ok["kind"] == 3  # client
    assert ok["trace_id"] == TRACE and ok["parent"] == "00f067aa0ba902b7"
    assert (ok["start"], ok["end"]) == (1000 * 10**9, 1000 * 10**9 + 5_000_000)
    assert ok["code"] == 0
    assert ok["attributes"] == {
        "faas.name": "shop", "server.address": "api.example", "server.port": 443,
        "skiff.egress.allowed": True, "skiff.egress.reason": "closed",
        "skiff.egress.bytes_up": 10, "skiff.egress.bytes_down": 20,
        "network.peer.address": "203.0.113.7", "skiff.egress.rule": "api.example"}
    assert denied["parent"] == "" and denied["trace_id"] != TRACE  # ambiguous: a root
    assert (denied["code"], denied["message"]) == (2, "not_allowed")
    assert denied["attributes"]["error.type"] == "not_allowed"


def test_peer_pid_is_the_kernels(tmp_path) -> None:  # noqa: ANN001
    if not hasattr(socket, "SO_PEERCRED"):
        pytest.skip("SO_PEERCRED is Linux's")

    async def main() -> list[int | None]:
        seen: asyncio.Queue[int | None] = asyncio.Queue()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.put_nowait(peer_pid(writer))
            writer.close()

        path = str(tmp_path / "s.sock")
        unix = await asyncio.start_unix_server(serve, path=path)
        tcp = await asyncio.start_server(serve, "127.0.0.1", 0)
        _, w1 = await asyncio.open_unix_connection(path)
        first = await seen.get()
        _, w2 = await asyncio.open_connection("127.0.0.1", tcp.sockets[0].getsockname()[1])
        second = await seen.get()
        for closing in (w1, w2, unix, tcp):
            closing.close()
        return [first, second]

    assert asyncio.run(main()) == [os.getpid(), None]


def test_a_publish_is_a_producer_span_with_one_per_target(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tracing, out = _tracing(monkeypatch)
    fan = PublishSpans(tracing).fan_out(
        {"id": "e1", "type": "order.placed", "source": "shop", "traceparent": HANDLER},
        [("billing", "skiff:rule:billing:0"), ("mail", "skiff:rule:mail:1")])
    assert fan is not None
    fan.end(None)
    billing, mail, publish = out.ended
    assert publish["name"] == "publish order.placed" and publish["kind"] == 4  # producer
    assert publish["parent"] == "00f067aa0ba902b7" and publish["trace_id"] == TRACE
    assert publish["attributes"]["messaging.batch.message_count"] == 2
    for span, app in ((billing, "billing"), (mail, "mail")):
        assert span["name"] == f"fan-out {app}" and span["parent"] == publish["span_id"]
        assert span["attributes"]["faas.name"] == app
    assert fan.traceparents == [f"00-{TRACE}-{billing['span_id']}-01",
                                f"00-{TRACE}-{mail['span_id']}-01"]


def test_a_failed_publish_and_no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    tracing, out = _tracing(monkeypatch)
    fan = PublishSpans(tracing).fan_out({"id": "e1", "type": "t", "source": "s"}, [("a", "q")])
    assert fan is not None
    fan.end("broker_unavailable")
    assert [(s["code"], s["message"]) for s in out.ended] == [(2, "broker_unavailable")] * 2
    assert out.ended[1]["parent"] == ""  # no traceparent on the event: a trace of its own
    assert PublishSpans(Tracing({})).fan_out({"id": "e1", "type": "t"}, [("a", "q")]) is None
