"""Metrics in-process: what the hooks count, and a scrape that survives a failing
source. The real server's figures are tests/observe/test_metrics.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from skiff.bus import MemoryBroker
from skiff.manifest import Manifest
from skiff.observe import Backlog, Metrics, PoolState, QueueState
from skiff.store.trigger_state import SQLiteTriggerState
from skiff.triggers import EventPlane


def _samples(m: Metrics) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(m.exposition().decode())
            for s in fam.samples}


class _Sources:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def pools(self) -> list[PoolState]:
        return [PoolState("a", "r1", idle=2, busy=1, starting=1, started=5)]

    def queues(self) -> list[QueueState]:
        if self.fail:
            raise RuntimeError("database unavailable")
        return [QueueState("jobs", 3, 1, 0, "jobs-dlq"), QueueState("jobs-dlq", 2, 0, 0, None)]

    def backlog(self) -> list[Backlog]:
        return [Backlog("a", 4, 100.0)]


def test_state_is_collected_at_scrape_time() -> None:
    m = Metrics(_Sources(), clock=lambda: 160.0)
    got = _samples(m)
    assert got[("skiff_instances", (("function_name", "a"), ("revision", "r1"),
                                    ("state", "busy")))] == 1
    assert got[("gateway_service_count", (("function_name", "a"),))] == 3
    assert got[("skiff_instances_started_total", (("function_name", "a"),))] == 5
    assert got[("skiff_queue_messages", (("queue", "jobs"), ("state", "in_flight")))] == 1
    assert got[("skiff_queue_dead_letter_messages", (("dead_letter_queue", "jobs-dlq"),
                                                     ("queue", "jobs")))] == 2
    assert got[("skiff_async_pending", (("function_name", "a"),))] == 4
    assert got[("skiff_async_oldest_age_seconds", (("function_name", "a"),))] == 60


def test_a_failing_source_leaves_the_rest_of_the_scrape() -> None:
    got = _samples(Metrics(_Sources(fail=True)))
    assert ("skiff_async_pending", (("function_name", "a"),)) in got
    assert not any(name == "skiff_queue_messages" for name, _ in got)


def test_egress_exits_and_fires_are_counted() -> None:
    m = Metrics()
    m.after_egress("a", True)
    m.after_egress("a", False, 3)  # a cap refusal reporting two more folded into it
    m.after_exit("a", "memory_limit")
    m.after_schedule_fire("a")
    got = _samples(m)
    verdict = "skiff_egress_connections_total"
    assert got[(verdict, (("function_name", "a"), ("verdict", "allowed")))] == 1
    assert got[(verdict, (("function_name", "a"), ("verdict", "denied")))] == 3
    assert got[("skiff_instance_exits_total", (("function_name", "a"),
                                              ("reason", "memory_limit")))] == 1
    assert got[("skiff_schedule_fires_total", (("function_name", "a"),))] == 1


def test_the_event_plane_reports_each_schedule_fire(tmp_path: Path) -> None:
    fired: list[str] = []

    async def invoke(inv):  # noqa: ANN001, ANN202
        raise AssertionError("not invoked here")

    async def main() -> None:
        plane = EventPlane(MemoryBroker(), SQLiteTriggerState(tmp_path / "events.db"), invoke,
                           log=lambda *a: None, after_fire=fired.append)
        plane.wire(Manifest.model_validate({
            "apiVersion": "skiff.dev/v1", "kind": "MicroApp",
            "metadata": {"name": "ticker", "owner": "t@example.com"},
            "spec": {"handler": "h:h", "triggers": [{"schedule": "rate(1 minute)"}]}}))
        plane.fire_due_schedules(1_000_000.0)  # the first look: the schedule starts now
        plane.fire_due_schedules(1_000_000.0 + 180)
        [(app, enqueued)] = [(a, n) for a, n, _ in plane.backlog()]
        assert app == "ticker" and enqueued >= 1 and fired == ["ticker"] * enqueued
        await plane.stop()

    asyncio.run(main())


def test_the_egress_proxys_verdicts_reach_the_metrics(tmp_path: Path) -> None:
    """server.egress_proxy wires each EgressEvent to the app's audit line and the
    metrics (a cap refusal counts the refusals folded into it)."""
    from skiff.config import Config
    from skiff.egress import EgressEvent
    from skiff.observe import Observe
    from skiff.server import egress_proxy

    lines: list = []

    class _Logs:
        def egress(self, ev: EgressEvent) -> None:
            lines.append(ev)

    m = Metrics()
    proxy = egress_proxy(Config.resolve(home=tmp_path, port=0), _Logs(),  # type: ignore[arg-type]
                         Observe(m))
    ev = dict(port=443, rule="api.example.com", bytes_up=0, bytes_down=0, duration_ms=1.0, ts=0.0)
    proxy.on_event(EgressEvent("a", "api.example.com", allowed=True, reason="closed", **ev))
    proxy.on_event(EgressEvent("a", "", allowed=False, reason="too_many_connections",
                               suppressed=4, **ev))
    got = _samples(m)
    verdict = "skiff_egress_connections_total"
    assert got[(verdict, (("function_name", "a"), ("verdict", "allowed")))] == 1
    assert got[(verdict, (("function_name", "a"), ("verdict", "denied")))] == 5
    assert len(lines) == 2
