"""Prometheus metrics of the platform, served as text at ``GET /metrics``.

Two kinds, kept apart so the request path pays only for the first:

- *events* (invocations, cold starts, throttles, egress verdicts, schedule
  fires, instance exits) are counted as they happen. Every invocation costs one
  dict lookup of its (app, revision, status, trigger) figures and three plain
  additions (no lock, no label tuple but the key); the rarer events (a cold
  start, an error, a 429) use prometheus-client's counters.
- *state* (instances idle/busy/starting, queue depths, DLQ sizes, the async
  backlog and the age of its oldest) is read only when Prometheus scrapes, by
  :class:`_Live`, a custom collector over a :class:`LiveSources` the
  composition root passes in. Scrapes run in a thread (the queries reach the
  database), never on the event loop.

Names follow the OpenFaaS gateway where they fit (``gateway_function_invocation_total``,
``gateway_functions_seconds``, ``gateway_service_count``) so the Grafana dashboards
made for it work; the rest are ``skiff_*``.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from skiff.store import Invocation

log = logging.getLogger(__name__)

# Serverless latencies: a warm handler answers in a millisecond, a cold one in tens,
# and the default timeout is 30 s; prometheus-client's default buckets stop at 10 s
# and start at 5 ms, which put every warm request in the first bucket.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)
INIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: OpenTelemetry's FaaS semantic conventions: faas.invoke_duration SHOULD use these.
INVOKE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                  10.0)


@dataclass(frozen=True, slots=True)
class PoolState:
    """One app's instances, as a scrape sees them."""

    app: str
    revision: str
    idle: int
    busy: int
    starting: int
    started: int  # instances the pool has taken in since it was made (a counter)


@dataclass(frozen=True, slots=True)
class QueueState:
    name: str
    visible: int
    in_flight: int
    delayed: int
    dead_letter_queue: str | None


@dataclass(frozen=True, slots=True)
class Backlog:
    """Async invocations of one app accepted and not settled."""

    app: str
    pending: int
    oldest: float  # epoch seconds the oldest was accepted


class LiveSources(Protocol):
    """What a scrape reads (called from the scrape's thread: copy before iterating).
    ``memory``: (app, revision, peak bytes) of each live instance the kernel accounts
    for (its cgroup), read by the OTLP metrics thread."""

    def pools(self) -> Iterable[PoolState]: ...
    def queues(self) -> Iterable[QueueState]: ...
    def backlog(self) -> Iterable[Backlog]: ...
    def memory(self) -> Iterable[tuple[str, str, int]]: ...


class _NoSources:
    def pools(self) -> Iterable[PoolState]:
        return ()

    def queues(self) -> Iterable[QueueState]:
        return ()

    def backlog(self) -> Iterable[Backlog]:
        return ()

    def memory(self) -> Iterable[tuple[str, str, int]]:
        return ()


class _Hist:
    """One histogram's figures, kept as plain numbers (see :meth:`Metrics.after_invocation`)."""

    __slots__ = ("buckets", "sum")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self.buckets = [0] * (len(bounds) + 1)  # per bucket, the last is +Inf
        self.sum = 0.0


class _Children:
    """What one (app, revision, status, trigger) adds to: its count, the histogram of
    its (app, revision, status), and its own of the handler's time alone (queueing
    left out, in :data:`INVOKE_BUCKETS`: OTLP's faas.invoke_duration)."""

    __slots__ = ("count", "hist", "run")

    def __init__(self, hist: _Hist) -> None:
        self.count = 0
        self.hist = hist
        self.run = _Hist(INVOKE_BUCKETS)


class Metrics:
    """The platform's metrics registry and the ``after_*`` calls that feed it."""

    def __init__(self, sources: LiveSources | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = reg = CollectorRegistry()
        self.sources = sources or _NoSources()
        self._clock = clock
        ProcessCollector(registry=reg)  # platform CPU, memory, fds (process_*)
        PlatformCollector(registry=reg)  # python_info
        self.cold_starts = Counter(
            "skiff_cold_starts", "Invocations served by an instance started for them",
            ["function_name", "revision"], registry=reg)
        self.init_seconds = Histogram(
            "skiff_init_duration_seconds", "Init (import and module code) of the instance "
            "a cold invocation started", ["function_name", "revision"], buckets=INIT_BUCKETS,
            registry=reg)
        self.errors = Counter(
            "skiff_invocation_errors", "Invocations that ended in a 5xx: the platform's "
            "error code, or app_5xx for an answer of the app's own",
            ["function_name", "revision", "error"], registry=reg)
        self.timeouts = Counter(
            "skiff_invocation_timeouts", "Invocations stopped at their timeout (504)",
            ["function_name", "revision"], registry=reg)
        self.throttles = Counter(
            "skiff_throttles", "Invocations refused with 429 (maxInstances and the wait "
            "queue full)", ["function_name", "revision"], registry=reg)
        self.exits = Counter(
            "skiff_instance_exits", "Instances gone, by why (idle or replaced, crashed, "
            "memory_limit, timeout...)", ["function_name", "reason"], registry=reg)
        self.egress = Counter(
            "skiff_egress_connections", "Connection attempts through the egress proxy",
            ["function_name", "verdict"], registry=reg)
        self.schedule_fires = Counter(
            "skiff_schedule_fires", "Schedule fires enqueued as async invocations",
            ["function_name"], registry=reg)
        reg.register(_Live(self))
        # the invocation count and duration of every (app, revision, status, trigger):
        # written by the event loop only, read by scrapes (a figure a scrape reads mid-
        # update is one request behind, never torn: each is one int or float store)
        self._children: dict[tuple[str, str, int, str], _Children] = {}
        self._hists: dict[tuple[str, str, int], _Hist] = {}
        self._lock = threading.Lock()

    # -- events -----------------------------------------------------------------
    def after_invocation(self, rec: Invocation) -> None:
        """One invocation record: counted and timed. The hot path, so plain numbers
        instead of prometheus-client's Counter and Histogram, whose three lock round
        trips a request cost ~10 % of the gateway's CPU (bench/observe.py); scrapes
        read them through :class:`_Live`."""
        key = (rec.app, rec.revision, rec.status, rec.trigger)
        kids = self._children.get(key)
        if kids is None:
            kids = self._child(key)
        kids.count += 1
        ran = rec.duration_ms / 1000
        seconds = ran + rec.queued_ms / 1000
        hist = kids.hist
        hist.sum += seconds
        hist.buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        run = kids.run
        run.sum += ran
        run.buckets[bisect.bisect_left(INVOKE_BUCKETS, ran)] += 1
        if rec.cold:
            self.cold_starts.labels(rec.app, rec.revision).inc()
            self.init_seconds.labels(rec.app, rec.revision).observe(rec.init_ms / 1000)
        status = rec.status
        if status >= 500:
            self.errors.labels(rec.app, rec.revision, rec.error or "app_5xx").inc()
            if rec.error == "timeout":
                self.timeouts.labels(rec.app, rec.revision).inc()
        elif status == 429 and rec.error:  # the pool's refusal, not an app's own 429
            self.throttles.labels(rec.app, rec.revision).inc()

    def _child(self, key: tuple[str, str, int, str]) -> _Children:
        with self._lock:  # against a scrape copying the dicts
            hist = self._hists.setdefault(key[:3], _Hist())
            kids = self._children[key] = _Children(hist)
        return kids

    def _tallies(self) -> tuple[list, list]:
        with self._lock:
            return list(self._children.items()), list(self._hists.items())

    def invocations(self) -> list[tuple[tuple[str, str, int, str], int, list[int], float]]:
        """Per (app, revision, status, trigger): the count, and the handler-time
        histogram (per-bucket counts over :data:`INVOKE_BUCKETS` and +Inf, the sum), as
        of now (for an exporter's thread; each figure is copied, never torn)."""
        children, _ = self._tallies()
        return [(key, kids.count, list(kids.run.buckets), kids.run.sum) for key, kids in children]

    def after_exit(self, app: str, reason: str) -> None:
        self.exits.labels(app, reason).inc()

    def after_egress(self, app: str, allowed: bool, count: int = 1) -> None:
        self.egress.labels(app, "allowed" if allowed else "denied").inc(count)

    def after_schedule_fire(self, app: str) -> None:
        self.schedule_fires.labels(app).inc()

    # -- exposition ---------------------------------------------------------------
    def exposition(self) -> bytes:
        """The text exposition of every metric (blocking: call it from a thread)."""
        return generate_latest(self.registry)


class _Guarded:
    """A source that fails (the database is away) leaves its families empty for this
    scrape, logged, instead of failing the whole scrape."""

    def __init__(self, sources: LiveSources) -> None:
        self._s = sources

    def __getattr__(self, name: str) -> Callable[[], list]:
        def read() -> list:
            try:
                return list(getattr(self._s, name)())
            except Exception:  # noqa: BLE001 - the rest of the scrape goes on
                log.warning("metrics: reading %s failed", name, exc_info=True)
                return []
        return read


class _Live(Collector):
    """State read at scrape time (see the module doc)."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self) -> list[Metric]:
        return []  # unchecked: the families depend on what is deployed

    def collect(self) -> Iterator[Metric]:
        children, hists = self._m._tallies()
        count = CounterMetricFamily(
            "gateway_function_invocation", "Invocations by app, revision, status code and "
            "trigger (http, invoke, event, queue)",
            labels=["function_name", "revision", "code", "trigger"])
        for (app, revision, status, trigger), kids in children:
            count.add_metric([app, revision, str(status), trigger], kids.count)
        seconds = HistogramMetricFamily(
            "gateway_functions_seconds", "Seconds from the pool's admission to the answer "
            "(the wait for an instance included)", labels=["function_name", "revision", "code"])
        for (app, revision, status), hist in hists:
            per, total, cumulative = list(hist.buckets), hist.sum, []
            running = 0
            for bound, n in zip((*DURATION_BUCKETS, math.inf), per, strict=True):
                running += n
                cumulative.append((floatToGoString(bound), running))
            seconds.add_metric([app, revision, str(status)], cumulative, total)
        yield from (count, seconds)

        src = _Guarded(self._m.sources)
        service = GaugeMetricFamily(
            "gateway_service_count", "Instances of the app (OpenFaaS: replicas)",
            labels=["function_name"])
        instances = GaugeMetricFamily(
            "skiff_instances", "Instances of the app by state", labels=["function_name",
                                                                         "revision", "state"])
        started = CounterMetricFamily(
            "skiff_instances_started", "Instances taken into the app's pool (churn: its rate)",
            labels=["function_name"])
        for pool in src.pools():
            service.add_metric([pool.app], pool.idle + pool.busy)
            for state, n in (("idle", pool.idle), ("busy", pool.busy),
                             ("starting", pool.starting)):
                instances.add_metric([pool.app, pool.revision, state], n)
            started.add_metric([pool.app], pool.started)
        yield from (service, instances, started)

        depth = GaugeMetricFamily("skiff_queue_messages", "Messages in a queue by state",
                                  labels=["queue", "state"])
        dlq = GaugeMetricFamily("skiff_queue_dead_letter_messages",
                                "Messages waiting in the dead-letter queue of a queue",
                                labels=["queue", "dead_letter_queue"])
        queues = list(src.queues())
        visible = {q.name: q.visible for q in queues}
        for q in queues:
            for state, n in (("visible", q.visible), ("in_flight", q.in_flight),
                             ("delayed", q.delayed)):
                depth.add_metric([q.name, state], n)
            if q.dead_letter_queue:
                dlq.add_metric([q.name, q.dead_letter_queue], visible.get(q.dead_letter_queue, 0))
        yield from (depth, dlq)

        pending = GaugeMetricFamily("skiff_async_pending",
                                    "Async invocations accepted and not settled",
                                    labels=["function_name"])
        age = GaugeMetricFamily("skiff_async_oldest_age_seconds",
                                "Age of the oldest async invocation not settled",
                                labels=["function_name"])
        now = self._m._clock()
        for b in src.backlog():
            pending.add_metric([b.app], b.pending)
            age.add_metric([b.app], max(0.0, now - b.oldest))
        yield from (pending, age)
