"""GET /metrics on a real server, after real traffic: each figure moved by exactly
what the traffic did (deltas between two scrapes, never wall-clock)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import httpx

from tests.conftest import SkiffServer
from tests.observe.conftest import METRICS_TOKEN, OtlpReceiver, delta, scrape, value

WEB = {"function_name": "obs-web"}


def test_metrics_need_the_token(observed: SkiffServer) -> None:
    """With SKIFF_METRICS_TOKEN set, a scrape without it (or with another) is a 401
    that says how to authenticate; with it, the text exposition."""
    for headers in ({}, {"authorization": "Bearer wrong"}):
        resp = observed.http.get("/metrics", headers=headers)
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"].startswith("Bearer")
        err = resp.json()["error"]
        assert err["code"] == "unauthorized"
        assert "SKIFF_METRICS_TOKEN" in err["message"] and "Bearer" in err["message"]
    ok = observed.http.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("text/plain")
    samples = scrape(observed)
    assert value(samples, "process_resident_memory_bytes") > 0  # the platform process
    assert any(n == "process_cpu_seconds_total" for n, _, _ in samples)


def test_invocations_by_code_and_trigger(observed: SkiffServer, tmp_path: Path) -> None:
    """A cold start, a warm request, a handler error, a 429, a timeout and a queue
    message: every counter moves by exactly that much, and the cold starts counted
    are the cold records the invocation log holds."""
    before = scrape(observed)
    http = observed.http
    # scaled to zero (and the instance gone, its slot free), so the next request is cold
    assert observed.admin.delete("/apps/obs-web/instances").status_code == 200
    observed.wait_for(lambda: delta(before, scrape(observed), "skiff_instance_exits_total",
                                    reason="stopped", **WEB) == 1, "the instance to stop")
    assert http.get("/obs-web/").status_code == 200
    assert http.get("/obs-web/").status_code == 200
    assert http.get("/obs-web/", params={"fail": "1"}).status_code == 500
    # hold the one instance (maxInstances 1, maxQueue 0): the next request is a 429
    gate = tmp_path / f"gate-{uuid.uuid4().hex}"
    held: list[httpx.Response] = []
    holder = threading.Thread(target=lambda: held.append(
        http.get("/obs-web/", params={"gate": str(gate)})))
    holder.start()
    try:
        observed.wait_for(lambda: value(scrape(observed), "skiff_instances", state="busy",
                                        **WEB) == 1, "the held request to occupy the instance")
        assert http.get("/obs-web/").status_code == 429
    finally:
        gate.touch()
        holder.join(30)
    assert held and held[0].status_code == 200
    # last: the timed-out instance holds the one slot until it is gone (429s meanwhile)
    assert http.get("/obs-web/", params={"sleep": "10"}).status_code == 504  # timeout 3 s
    sent = observed.admin.post("/queues/obs-jobs/messages", json={"body": {"n": 1}})
    assert sent.status_code == 202
    observed.wait_for(lambda: delta(before, scrape(observed), "gateway_function_invocation_total",
                                    function_name="obs-worker", trigger="queue") == 1,
                      "the queue message's invocation")
    after = scrape(observed)

    def moved(name: str, **labels: str) -> float:
        return delta(before, after, name, **labels)

    inv = "gateway_function_invocation_total"
    assert moved(inv, code="200", trigger="http", **WEB) == 3
    assert moved(inv, code="500", **WEB) == 1
    assert moved(inv, code="504", **WEB) == 1
    assert moved(inv, code="429", **WEB) == 1
    assert moved(inv, **WEB) == 6
    assert moved(inv, function_name="obs-worker", code="200", trigger="queue") == 1
    assert moved("gateway_functions_seconds_count", code="200", **WEB) == 3
    assert moved("skiff_invocation_errors_total", error="handler_error", **WEB) == 1
    assert moved("skiff_invocation_errors_total", error="timeout", **WEB) == 1
    assert moved("skiff_invocation_timeouts_total", **WEB) == 1
    assert moved("skiff_throttles_total", **WEB) == 1
    assert moved("skiff_cold_starts_total", **WEB) == 1
    assert moved("skiff_init_duration_seconds_count", **WEB) == 1
    records = observed.admin.get("/apps/obs-web/invocations", params={"limit": 100}).json()
    assert value(after, "skiff_cold_starts_total", **WEB) == sum(1 for r in records
                                                                  if r["cold"])
    assert moved("skiff_instances_started_total", **WEB) == 1
    observed.wait_for(lambda: delta(before, scrape(observed), "skiff_instance_exits_total",
                                    **WEB) == 2, "the timed-out instance's exit")
    # the timed-out instance was stopped and nothing asked for another since
    assert any(n == "gateway_service_count" and lab == WEB for n, lab, _ in after)
    assert value(after, "gateway_service_count", **WEB) == 0
    assert value(after, "skiff_instances", state="busy", **WEB) == 0
    depth = [lab for n, lab, _ in after if n == "skiff_queue_messages"]
    assert {"queue": "obs-jobs", "state": "visible"} in depth
    assert any(lab.get("queue") == "obs-jobs" and lab.get("dead_letter_queue") == "obs-jobs-dlq"
               for n, lab, _ in after if n == "skiff_queue_dead_letter_messages")


def test_async_backlog_is_read_at_scrape_time(observed: SkiffServer, tmp_path: Path) -> None:
    """An async invocation that cannot run yet (the only instance is held) is in the
    backlog with the age of the oldest; once it runs, the backlog is empty."""
    http = observed.http
    gate = tmp_path / f"gate-{uuid.uuid4().hex}"

    def hold() -> None:  # a 429 while the last test's timed-out instance is still going
        while http.get("/obs-web/", params={"gate": str(gate)}).status_code == 429:
            time.sleep(0.05)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        observed.wait_for(lambda: value(scrape(observed), "skiff_instances", state="busy",
                                        **WEB) == 1, "the held request to occupy the instance")
        accepted = http.post("/obs-web/", headers={"x-skiff-invocation-type": "Event"})
        assert accepted.status_code == 202
        samples = scrape(observed)
        assert value(samples, "skiff_async_pending", **WEB) == 1
        assert value(samples, "skiff_async_oldest_age_seconds", **WEB) >= 0
    finally:
        gate.touch()
        holder.join(30)
    observed.wait_for(lambda: value(scrape(observed), "skiff_async_pending", **WEB) == 0,
                      "the async invocation to run")


def test_otlp_export_carries_the_same_figures(observed: SkiffServer, otlp: OtlpReceiver) -> None:
    """The OTLP metrics export (decoded by the local receiver) under the FaaS names:
    once traffic stops, each of its cumulative figures equals /metrics' own."""
    assert http_get_ok(observed)  # at least one invocation even when run alone

    def figures() -> tuple[dict, dict] | None:
        samples, got = scrape(observed), otlp.latest_metrics()
        if "faas.invocations" not in got:
            return None
        codes = [(int(lab["code"]), v) for n, lab, v in samples
                 if n == "gateway_function_invocation_total" and lab["function_name"] == "obs-web"]
        want = {"faas.invocations": sum(v for c, v in codes if c < 500),
                "faas.errors": sum(v for c, v in codes if c >= 500),
                "faas.invoke_duration": sum(v for _, v in codes),
                "faas.timeouts": value(samples, "skiff_invocation_timeouts_total", **WEB),
                "faas.coldstarts": value(samples, "skiff_cold_starts_total", **WEB),
                "faas.init_duration": value(samples, "skiff_init_duration_seconds_count", **WEB)}
        have = {name: _otlp_total(got.get(name), "obs-web") for name in want}
        return (want, got) if have == want else None

    want, got = observed.wait_for(figures, "an OTLP export equal to /metrics")
    assert want["faas.invocations"] >= 1
    assert got["faas.invoke_duration"].unit == "s"
    point = got["faas.invoke_duration"].histogram.data_points[0]
    attrs = {a.key: a.value.string_value for a in point.attributes}
    assert attrs["faas.name"] and attrs["faas.version"] and attrs["faas.trigger"]
    assert list(point.explicit_bounds)[:3] == [0.005, 0.01, 0.025]  # the conventions' buckets
    assert got["faas.coldstarts"].sum.is_monotonic
    if os.geteuid() == 0:  # only root gives instances cgroups, the kernel's memory figure
        mem = got["faas.mem_usage"]
        assert mem.unit == "By"
        point = mem.histogram.data_points[0]
        assert point.count >= 1 and point.sum / point.count > 1 << 20  # a Python process


def http_get_ok(server: SkiffServer) -> bool:
    while (status := server.http.get("/obs-web/").status_code) == 429:
        time.sleep(0.05)  # the previous test's instance still going
    return status == 200


def _otlp_total(metric: object, app: str) -> float:
    """A metric's points of ``app`` summed (a histogram's: its counts)."""
    if metric is None:
        return 0
    kind = metric.WhichOneof("data")  # type: ignore[attr-defined]
    total = 0.0
    for p in getattr(metric, kind).data_points:
        if {a.key: a.value.string_value for a in p.attributes}.get("faas.name") == app:
            total += p.count if kind == "histogram" else p.as_int
    return total
