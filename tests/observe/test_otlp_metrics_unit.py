"""OTLP metrics in-process: the FaaS points built from the figures /metrics keeps,
the SDK's MetricsData they become, and one warning a minute for failing exports
(a clock the test moves). The real server's export is in test_otlp_metrics.py."""

from __future__ import annotations

import time

import pytest

from skiff.observe import Metrics, OtlpMetrics
from skiff.observe.metrics import INVOKE_BUCKETS
from skiff.observe.otlpmetrics import MEMORY_BUCKETS, add_memory, endpoint_of, points
from skiff.store import Invocation


def _rec(status: int = 200, trigger: str = "http", *, cold: bool = False, ms: float = 3.0,
         queued: float = 0.0, error: str | None = None, app: str = "a") -> Invocation:
    return Invocation("rid", app, "r1", "i1", trigger, cold, 40.0 if cold else 0.0, ms, queued,
                      128, status, error, time.time(), "ab" * 16)


@pytest.mark.parametrize(("env", "endpoint"), [
    ({}, ""),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "http://c:4318/v1/metrics"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT":
      "http://m/x"}, "http://m/x"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_METRICS_EXPORTER": "none"}, ""),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, ""),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/v1/traces"}, ""),
])
def test_endpoint(env: dict[str, str], endpoint: str) -> None:
    assert endpoint_of(env) == endpoint


def test_points_follow_the_faas_conventions() -> None:
    m = Metrics()
    for rec in (_rec(ms=3.0, queued=500.0), _rec(ms=80.0, cold=True), _rec(502, error="bad"),
                _rec(504, error="timeout"), _rec(200, "queue"), _rec(200, "schedule", app="b")):
        m.after_invocation(rec)
    got = points(m)
    web = {"faas.name": "a", "faas.version": "r1", "faas.trigger": "http"}
    assert got["faas.invocations"] == [
        (web, 2), ({**web, "faas.trigger": "pubsub"}, 1),
        ({"faas.name": "b", "faas.version": "r1", "faas.trigger": "timer"}, 1)]
    assert got["faas.errors"] == [(web, 2)]
    [(attrs, (per, bounds, total))] = [p for p in got["faas.invoke_duration"] if p[0] == web]
    assert bounds == INVOKE_BUCKETS and sum(per) == 4
    # the handler's time only: the 500 ms in the queue is not in it
    assert per[0] == 3 and per[bounds.index(0.1)] == 1  # 3 ms x3 (<= 5 ms), 80 ms
    assert total == pytest.approx((3 + 80 + 3 + 3) / 1000)
    plain = {"faas.name": "a", "faas.version": "r1"}
    assert got["faas.timeouts"] == [(plain, 1)]
    assert got["faas.coldstarts"] == [(plain, 1)]
    [(attrs, (per, bounds, total))] = got["faas.init_duration"]
    assert attrs == plain and sum(per) == 1 and total == pytest.approx(0.04)
    assert len(per) == len(bounds) + 1


def test_instance_memory_is_a_cumulative_histogram() -> None:
    memory: dict = {}
    add_memory(memory, [("a", "r1", 20 << 20), ("a", "r1", 100 << 20), ("b", "r2", 5 << 30)])
    add_memory(memory, [("a", "r1", 20 << 20)])  # the next export's sample
    [(attrs, (per, bounds, total)), (other, (per_b, _, _))] = points(Metrics(), memory)[
        "faas.mem_usage"]
    assert attrs == {"faas.name": "a", "faas.version": "r1"} and bounds == MEMORY_BUCKETS
    assert per[1] == 2 and per[3] == 1 and sum(per) == 3  # 20 MiB twice (<= 32), 100 MiB
    assert total == (20 + 100 + 20) << 20
    assert other["faas.name"] == "b" and per_b[-1] == 1  # over 4 GiB: +Inf


def test_metrics_data_encodes_to_otlp() -> None:
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    m = Metrics()
    m.after_invocation(_rec(cold=True))
    exporter = _Exporter()
    otlp = OtlpMetrics(m, {}, exporter=exporter)
    assert otlp.export()
    [req] = [encode_metrics(d) for d in exporter.sent]
    got = {mt.name: mt for rm in req.resource_metrics for sm in rm.scope_metrics
           for mt in sm.metrics}
    assert set(got) == {"faas.invocations", "faas.invoke_duration", "faas.coldstarts",
                        "faas.init_duration"}
    inv = got["faas.invocations"]
    assert inv.unit == "{invocation}" and inv.sum.is_monotonic
    assert inv.sum.aggregation_temporality == 2  # cumulative
    assert inv.sum.data_points[0].as_int == 1
    hist = got["faas.invoke_duration"].histogram.data_points[0]
    assert list(hist.explicit_bounds) == list(INVOKE_BUCKETS) and hist.count == 1
    assert not hist.HasField("min")  # not kept: not invented


def test_a_failing_endpoint_warns_once_a_minute() -> None:
    now = [1000.0]
    warned: list[str] = []
    exporter = _Exporter(ok=False)
    otlp = OtlpMetrics(Metrics(), {}, exporter=exporter, clock=lambda: now[0],
                       warn=warned.append)
    for _ in range(5):
        assert not otlp.export()
        now[0] += 10
    assert len(warned) == 1 and "figures are kept" in warned[0]
    now[0] += 20  # 60 s after the first
    otlp.export()
    assert len(warned) == 2 and "(4 more failed exports left out)" in warned[1]


class _Exporter:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.sent: list = []

    def export(self, data: object) -> object:
        from opentelemetry.sdk.metrics.export import MetricExportResult

        self.sent.append(data)
        return MetricExportResult.SUCCESS if self.ok else MetricExportResult.FAILURE

    def shutdown(self) -> None:
        pass
