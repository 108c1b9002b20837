"""OpenTelemetry metrics: the figures :class:`~skiff.observe.metrics.Metrics` keeps
for ``/metrics``, pushed over OTLP/HTTP under the FaaS semantic-convention names.

On when ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is
set (unless ``OTEL_SDK_DISABLED=true`` or ``OTEL_METRICS_EXPORTER=none``). Every
``OTEL_METRIC_EXPORT_INTERVAL`` ms (60,000) a thread of its own reads the figures,
builds the SDK's ``MetricsData`` from them and hands it to the SDK's OTLP/HTTP
exporter. No OpenTelemetry instrument is touched on the request path: an SDK
``Histogram.record`` costs a lock and an aggregation per request, and the figures
already exist (the Prometheus side keeps them as plain numbers).

Temporality is cumulative, from the moment the platform started: an export that
fails (an endpoint that is down) loses nothing, the next one that arrives carries
it. Failures are one ``skiff:`` warning a minute, with the exporter's reason; the
thread waits for the endpoint at most ``OTEL_EXPORTER_OTLP_TIMEOUT``, requests never.

=====================  =========  ===========  ==========================================
name                   kind       unit         attributes (and what is counted)
=====================  =========  ===========  ==========================================
faas.invocations       counter    {invocation}  faas.name, faas.version, faas.trigger (< 500)
faas.errors            counter    {error}       faas.name, faas.version, faas.trigger (5xx)
faas.invoke_duration   histogram  s             faas.name, faas.version, faas.trigger
faas.timeouts          counter    {timeout}     faas.name, faas.version
faas.coldstarts        counter    {coldstart}   faas.name, faas.version
faas.init_duration     histogram  s             faas.name, faas.version
faas.mem_usage         histogram  By            faas.name, faas.version
=====================  =========  ===========  ==========================================

The conventions make ``faas.name`` a resource attribute (one process, one function);
a Skiff node serves many apps, so each point carries it, with the revision as
``faas.version``. ``faas.mem_usage`` is each live instance's peak memory as its
cgroup counts it (the kernel's word, never the app's), sampled once an export: not
per invocation, which would cost a file read on the request path; absent where
instances have no cgroup (without root).
"""

from __future__ import annotations

import bisect
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from skiff.logtext import one_line
from skiff.observe.metrics import INVOKE_BUCKETS, Metrics

#: OpenTelemetry's faas.trigger values for Skiff's triggers.
FAAS_TRIGGER = {"http": "http", "invoke": "other", "event": "pubsub", "queue": "pubsub",
                "schedule": "timer"}
#: faas.mem_usage buckets, bytes: 16 MiB to 4 GiB.
MEMORY_BUCKETS = tuple(float(1 << n) for n in range(24, 33))
#: A failing endpoint is reported at most this often.
WARN_EVERY_SECONDS = 60.0

_EXPORTER_LOGGER = "opentelemetry.exporter.otlp.proto.http.metric_exporter"


def endpoint_of(env: Mapping[str, str]) -> str:
    """The metrics endpoint the environment names ("" when export is off)."""
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return ""
    if env.get("OTEL_METRICS_EXPORTER", "otlp").strip().lower() == "none":
        return ""
    own = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    if own:
        return own  # a signal's own endpoint is used as given
    general = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return general.rstrip("/") + "/v1/metrics" if general else ""


def _attrs(app: str, revision: str, trigger: str | None = None) -> dict[str, str]:
    attrs = {"faas.name": app, "faas.version": revision}
    if trigger is not None:
        attrs["faas.trigger"] = FAAS_TRIGGER.get(trigger, "other")
    return attrs


def add_memory(into: dict[tuple[str, str], tuple[list[int], float]],
               samples: Iterable[tuple[str, str, int]]) -> None:
    """Count each (app, revision, bytes) sample into its cumulative histogram."""
    for app, revision, peak in samples:
        per, total = into.get((app, revision)) or ([0] * (len(MEMORY_BUCKETS) + 1), 0.0)
        per[bisect.bisect_left(MEMORY_BUCKETS, peak)] += 1
        into[(app, revision)] = (per, total + peak)


def points(metrics: Metrics, memory: Mapping[tuple[str, str], tuple[list[int], float]]
           | None = None) -> dict[str, list[tuple[dict[str, str], Any]]]:
    """Each FaaS metric's points as of now: (attributes, value), the value an int for
    counters and (per-bucket counts, bounds, sum) for histograms. Pure of the SDK
    (table-tested)."""
    invocations: dict[tuple, int] = {}
    errors: dict[tuple, int] = {}
    durations: dict[tuple, tuple[list[int], float]] = {}
    for (app, revision, status, trigger), count, buckets, total in metrics.invocations():
        key = (app, revision, trigger)
        into = errors if status >= 500 else invocations
        into[key] = into.get(key, 0) + count
        had = durations.get(key)
        if had is None:
            durations[key] = (buckets, total)
        else:
            durations[key] = ([a + b for a, b in zip(had[0], buckets, strict=True)],
                              had[1] + total)
    out: dict[str, list[tuple[dict[str, str], Any]]] = {
        "faas.invocations": [(_attrs(*k), n) for k, n in invocations.items()],
        "faas.errors": [(_attrs(*k), n) for k, n in errors.items()],
        "faas.invoke_duration": [(_attrs(*k), (b, INVOKE_BUCKETS, s))
                                 for k, (b, s) in durations.items()],
        "faas.timeouts": _counter(metrics.timeouts),
        "faas.coldstarts": _counter(metrics.cold_starts),
        "faas.init_duration": _histogram(metrics.init_seconds),
        "faas.mem_usage": [(_attrs(app, revision), (list(per), MEMORY_BUCKETS, total))
                           for (app, revision), (per, total) in (memory or {}).items()],
    }
    return out


def _counter(counter: Any) -> list[tuple[dict[str, str], int]]:
    """A prometheus-client counter's children (function_name, revision) as points."""
    return [(_attrs(s.labels["function_name"], s.labels["revision"]), int(s.value))
            for fam in counter.collect() for s in fam.samples if s.name.endswith("_total")]


def _histogram(hist: Any) -> list[tuple[dict[str, str], Any]]:
    """A prometheus-client histogram's children as (per-bucket counts, bounds, sum)."""
    by: dict[tuple[str, str], dict[str, Any]] = {}
    for fam in hist.collect():
        for s in fam.samples:
            key = (s.labels["function_name"], s.labels["revision"])
            one = by.setdefault(key, {"le": [], "sum": 0.0})
            if s.name.endswith("_bucket"):
                one["le"].append((float(s.labels["le"]), int(s.value)))
            elif s.name.endswith("_sum"):
                one["sum"] = s.value
    out = []
    for (app, revision), one in by.items():
        cumulative = sorted(one["le"])
        bounds = tuple(b for b, _ in cumulative if b != float("inf"))
        per, before = [], 0
        for _, running in cumulative:
            per.append(running - before)
            before = running
        out.append((_attrs(app, revision), (per, bounds, one["sum"])))
    return out


_UNITS = {"faas.invocations": ("{invocation}", "Invocations that did not end in a 5xx"),
          "faas.errors": ("{error}", "Invocations that ended in a 5xx"),
          "faas.invoke_duration": ("s", "The handler's time (the wait for an instance "
                                        "left out)"),
          "faas.timeouts": ("{timeout}", "Invocations stopped at their timeout"),
          "faas.coldstarts": ("{coldstart}", "Invocations served by an instance started "
                                             "for them"),
          "faas.init_duration": ("s", "Init of the instance a cold invocation started"),
          "faas.mem_usage": ("By", "Peak memory of each live instance (its cgroup's), "
                                   "sampled once an export")}


class OtlpMetrics:
    """The export thread: :meth:`start`, then :meth:`close` (one last export)."""

    def __init__(self, metrics: Metrics, environ: Mapping[str, str] | None = None, *,
                 exporter: Any = None, clock: Callable[[], float] = time.monotonic,
                 warn: Callable[[str], None] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.endpoint = endpoint_of(env)
        self.enabled = bool(self.endpoint) or exporter is not None
        self._metrics = metrics
        self._interval = _seconds(env, "OTEL_METRIC_EXPORT_INTERVAL", 60.0)
        self._clock = clock
        self._warn = warn or _stderr
        self._next_warning = 0.0
        self._left_out = 0
        self._last_reason = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_ns = time.time_ns()
        self._memory: dict[tuple[str, str], tuple[list[int], float]] = {}
        self._exporter = exporter
        if self.enabled:
            self._build(env)

    def _build(self, env: Mapping[str, str]) -> None:
        # imported only when export is on (as for traces: ~100 ms of imports otherwise)
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            Histogram,
            HistogramDataPoint,
            Metric,
            MetricsData,
            NumberDataPoint,
            ResourceMetrics,
            ScopeMetrics,
            Sum,
        )
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        self._sdk = (AggregationTemporality.CUMULATIVE, Histogram, HistogramDataPoint, Metric,
                     MetricsData, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum)
        self._resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "skiff")})
        self._scope = InstrumentationScope("skiff")
        if self._exporter is None:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )

            self._exporter = OTLPMetricExporter(self.endpoint)
            # its own log lines (one per failed export) become our one a minute, with
            # the last reason it gave
            self._reason = _Reason(self)
            sdk_log = logging.getLogger(_EXPORTER_LOGGER)
            sdk_log.addHandler(self._reason)
            sdk_log.propagate = False

    def data(self) -> Any:
        """The SDK's ``MetricsData`` of the figures as of now."""
        (cumulative, Histogram, HistogramDataPoint, Metric, MetricsData, NumberDataPoint,
         ResourceMetrics, ScopeMetrics, Sum) = self._sdk
        start, now = self._started_ns, time.time_ns()
        try:
            add_memory(self._memory, self._metrics.sources.memory())
        except Exception as exc:  # noqa: BLE001 - the other figures still go
            self._last_reason = f"reading instance memory: {type(exc).__name__}: {exc}"
        metrics = []
        for name, pts in points(self._metrics, self._memory).items():
            if not pts:
                continue
            unit, description = _UNITS[name]
            if name.endswith(("_duration", "_usage")):
                data = Histogram([HistogramDataPoint(
                    attrs, start, now, sum(per), total, per, bounds, None, None)  # type: ignore[arg-type]
                    for attrs, (per, bounds, total) in pts], cumulative)
            else:
                data = Sum([NumberDataPoint(attrs, start, now, n) for attrs, n in pts],
                           cumulative, is_monotonic=True)
            metrics.append(Metric(name, description, unit, data))
        return MetricsData([ResourceMetrics(self._resource, [ScopeMetrics(
            self._scope, metrics, "")], "")])

    def export(self) -> bool:
        """One export (from the thread; callable from a test). False when it failed."""
        from opentelemetry.sdk.metrics.export import MetricExportResult

        try:
            ok = self._exporter.export(self.data()) == MetricExportResult.SUCCESS
        except Exception as exc:  # noqa: BLE001 - a broken export must not end the thread
            self._last_reason = f"{type(exc).__name__}: {exc}"
            ok = False
        if not ok:
            self._failed()
        return ok

    def _failed(self) -> None:
        now = self._clock()
        if now < self._next_warning:
            self._left_out += 1
            return
        self._next_warning = now + WARN_EVERY_SECONDS
        more = f" ({self._left_out} more failed exports left out)" if self._left_out else ""
        self._left_out = 0
        self._warn(one_line(f"skiff: metrics export to {self.endpoint} failed (the figures are "
                            f"kept and go with the next export): "
                            f"{self._last_reason or 'no reason given'}{more}"))

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="skiff-otlp-metrics",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.export()
        self.export()  # what the last interval added

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=15)
            self._thread = None
        if self._exporter is not None and self.enabled:
            self._exporter.shutdown()
            self.enabled = False
            reason = getattr(self, "_reason", None)
            if reason is not None:
                logging.getLogger(_EXPORTER_LOGGER).removeHandler(reason)


class _Reason(logging.Handler):
    def __init__(self, owner: OtlpMetrics) -> None:
        super().__init__(logging.DEBUG)
        self._owner = owner

    def emit(self, record: logging.LogRecord) -> None:
        self._owner._last_reason = record.getMessage()


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return max(0.01, float(env[name]) / 1000)
    except (KeyError, ValueError):
        return default


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
