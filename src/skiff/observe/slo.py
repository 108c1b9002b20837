"""What should alert now: pure decisions over invocation records and a few samples.

:func:`evaluate` takes what one evaluation sees (:class:`AppView` per app,
:class:`QueueView` per queue with a dead-letter queue, the time) and the rules'
pending state, and returns the :class:`Finding` list of what fires now and the
new pending state. No clock, no storage: tests move ``now`` and read the result
(tests/observe/test_slo.py is the table).

SLOs (``spec.slo``): multi-window, multi-burn-rate alerts as the Google SRE
workbook ("Alerting on SLOs", recipe 6) sets them. The burn rate of a window is
its bad-event ratio over the error budget (``1 - objective``); an alert fires
when the long window *and* its short window (1/12 of it) both burn at least the
factor, so it fires fast on a sharp outage and resets fast once it ends:

    severity  long window  short window  burn rate  budget spent at the threshold
    page      1 h          5 min         14.4       2 % of 30 days in 1 h
    page      6 h          30 min        6          5 % of 30 days in 6 h
    ticket    24 h         2 h           3          10 % of 30 days in 24 h

Availability counts a 5xx as bad. Latency (``latencyP95Ms: X``) reads as "95 %
of invocations answer within X ms": an invocation slower than X is bad and the
budget is 5 %. A window needs :data:`MIN_EVENTS` invocations before it can burn
(one failed request of one is not an outage).

Platform rules, for every app (thresholds in :class:`Thresholds`):

- ``error_rate``: 5xx share over 5 min at least 5 %;
- ``latency_p95``: p95 over 5 min above 80 % of the app's timeout (it is about to
  time out);
- ``cold_starts``: share of cold invocations over 15 min at least 20 %;
- ``instance_churn``: at least 20 instances started in 15 min;
- ``memory_high``: the app's fullest instance holds at least 90 % of the memory
  limit (the kernel's count of its cgroup, read at each evaluation), and so for
  15 minutes (``for``: pending until then; without cgroups it never fires);
- ``dlq_growth``: a dead-letter queue holds more messages than 15 min before;
- ``budget``: the app's spend is at least 90 % of its budget. The budget figures
  come from the cost/budget model (``AppView.budget_use``); ``None`` (no budget,
  or no model yet) never fires.

Invocation records are the platform's own (the gateway times them and reads
status and memory from the supervisor, never from the app), so a hostile app can
make only its own alerts fire.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

MIN = 60.0
HOUR = 3600.0
#: (severity, long window, short window, burn rate factor)
BURN_WINDOWS: tuple[tuple[str, float, float, float], ...] = (
    ("page", 1 * HOUR, 5 * MIN, 14.4),
    ("page", 6 * HOUR, 30 * MIN, 6.0),
    ("ticket", 24 * HOUR, 2 * HOUR, 3.0),
)
#: the longest window any rule reads: records older than this are never needed
LONGEST = max(w[1] for w in BURN_WINDOWS)
#: invocations a window needs before its ratio means anything
MIN_EVENTS = 10
LATENCY_TARGET = 0.95  # latencyP95Ms: 95 % within the bound


@dataclass(frozen=True)
class Thresholds:
    error_rate: float = 0.05
    error_window: float = 5 * MIN
    p95_of_timeout: float = 0.8
    p95_window: float = 5 * MIN
    cold_share: float = 0.2
    cold_window: float = 15 * MIN
    churn_starts: int = 20
    churn_window: float = 15 * MIN
    memory_share: float = 0.9
    memory_for: float = 15 * MIN  # held this long before it fires
    dlq_window: float = 15 * MIN
    budget_share: float = 0.9
    min_events: int = MIN_EVENTS


@dataclass(frozen=True, slots=True)
class Record:
    """One invocation, the figures the rules read."""

    ts: float
    status: int
    duration_ms: float
    cold: bool = False


@dataclass(frozen=True)
class AppView:
    app: str
    records: Sequence[Record]  # any order
    timeout_s: float = 30.0
    memory_limit_mb: int = 256
    memory_used_mb: float | None = None  # the fullest live instance's cgroup, now
    availability: float | None = None  # spec.slo, percent
    latency_p95_ms: float | None = None
    started: Sequence[tuple[float, int]] = ()  # (ts, instances started so far) samples
    budget_use: float | None = None  # spend / budget (the budget model's hook)


@dataclass(frozen=True)
class QueueView:
    queue: str
    dead_letter_queue: str
    depths: Sequence[tuple[float, int]]  # (ts, messages in the DLQ) samples


@dataclass(frozen=True, slots=True)
class Finding:
    """One alert that is active now. ``key`` names it across evaluations."""

    rule: str
    subject: str  # the app or queue
    severity: str  # page | ticket | warning
    summary: str
    value: float
    threshold: float

    @property
    def key(self) -> str:
        return f"{self.rule}:{self.subject}"


@dataclass(frozen=True)
class Evaluation:
    findings: list[Finding]
    pending: dict[str, float] = field(default_factory=dict)  # key -> since


def _window(records: Iterable[Record], now: float, seconds: float) -> list[Record]:
    start = now - seconds
    return [r for r in records if start < r.ts <= now]


def burn_rate(bad: int, total: int, objective: float) -> float:
    """Bad ratio over the budget (``objective`` as a fraction, e.g. 0.995)."""
    if total <= 0:
        return 0.0
    return (bad / total) / (1.0 - objective)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def slo_findings(view: AppView, now: float, min_events: int = MIN_EVENTS) -> list[Finding]:
    """The burn-rate alerts of the app's objectives (the most severe pair per SLO)."""
    out = []
    objectives = []
    if view.availability is not None:
        objectives.append(("slo_availability", view.availability / 100,
                           lambda r: r.status >= 500, f"availability {view.availability:g} %"))
    if view.latency_p95_ms is not None:
        bound = view.latency_p95_ms
        objectives.append(("slo_latency", LATENCY_TARGET, lambda r: r.duration_ms > bound,
                           f"95 % within {bound:g} ms"))
    for rule, objective, is_bad, what in objectives:
        for severity, long_s, short_s, factor in BURN_WINDOWS:
            rates = []
            for seconds in (long_s, short_s):
                recs = _window(view.records, now, seconds)
                bad = sum(1 for r in recs if is_bad(r))
                rates.append(burn_rate(bad, len(recs), objective)
                             if len(recs) >= min_events else 0.0)
            if min(rates) >= factor:
                out.append(Finding(
                    rule, view.app, severity,
                    f"{view.app} burns its error budget ({what}) {rates[0]:.1f}x over "
                    f"{_span(long_s)} and {rates[1]:.1f}x over {_span(short_s)} "
                    f"(alerts at {factor:g}x)", round(rates[0], 3), factor))
                break  # the most severe pair is enough: one alert per objective
    return out


def app_findings(view: AppView, now: float, t: Thresholds) -> list[Finding]:
    """The platform rules of one app, before ``for`` durations (see :func:`evaluate`)."""
    out = slo_findings(view, now, t.min_events)
    name = view.app
    recs = _window(view.records, now, t.error_window)
    if len(recs) >= t.min_events:
        share = sum(1 for r in recs if r.status >= 500) / len(recs)
        if share >= t.error_rate:
            out.append(Finding("error_rate", name, "warning",
                               f"{name}: {share:.0%} of {len(recs)} invocations failed (5xx) "
                               f"in {_span(t.error_window)}", round(share, 4), t.error_rate))
    recs = _window(view.records, now, t.p95_window)
    if len(recs) >= t.min_events:
        p95 = _p95([r.duration_ms for r in recs])
        bound = view.timeout_s * 1000 * t.p95_of_timeout
        if p95 > bound:
            out.append(Finding("latency_p95", name, "warning",
                               f"{name}: p95 {p95:.0f} ms in {_span(t.p95_window)}, near its "
                               f"timeout of {view.timeout_s:g} s", round(p95, 3), bound))
    recs = _window(view.records, now, t.cold_window)
    if len(recs) >= t.min_events:
        share = sum(1 for r in recs if r.cold) / len(recs)
        if share >= t.cold_share:
            out.append(Finding("cold_starts", name, "warning",
                               f"{name}: {share:.0%} of {len(recs)} invocations were cold "
                               f"starts in {_span(t.cold_window)}", round(share, 4),
                               t.cold_share))
    starts = _growth(view.started, now, t.churn_window)
    if starts is not None and starts >= t.churn_starts:
        out.append(Finding("instance_churn", name, "warning",
                           f"{name}: {starts} instances started in {_span(t.churn_window)}",
                           starts, t.churn_starts))
    limit = view.memory_limit_mb * t.memory_share
    used = view.memory_used_mb
    if used is not None and used >= limit:
        out.append(Finding("memory_high", name, "warning",
                           f"{name}: an instance holds {used:.0f} MB of its {view.memory_limit_mb} "
                           f"MB limit (over {t.memory_share:.0%} for {_span(t.memory_for)})",
                           round(used, 1), limit))
    if view.budget_use is not None and view.budget_use >= t.budget_share:
        out.append(Finding("budget", name, "warning",
                           f"{name} has spent {view.budget_use:.0%} of its budget",
                           round(view.budget_use, 4), t.budget_share))
    return out


def queue_findings(view: QueueView, now: float, t: Thresholds) -> list[Finding]:
    grown = _growth(view.depths, now, t.dlq_window)
    if grown is None or grown <= 0:
        return []
    depth = max(view.depths)[1]
    return [Finding("dlq_growth", view.queue, "warning",
                    f"queue {view.queue}: its dead-letter queue {view.dead_letter_queue} "
                    f"grew by {grown} to {depth} in {_span(t.dlq_window)}; peek with "
                    f"`skiff queues peek {view.dead_letter_queue}`", grown, 0)]


def _for(rule: str, t: Thresholds) -> float:
    """How long the rule must hold before it fires (Prometheus' ``for``)."""
    return t.memory_for if rule == "memory_high" else 0.0


def evaluate(apps: Iterable[AppView], queues: Iterable[QueueView], now: float,
             pending: Mapping[str, float] | None = None,
             thresholds: Thresholds | None = None) -> Evaluation:
    """What fires at ``now``. ``pending``: since when each key with a ``for`` duration
    has held (the previous evaluation's); a key that stops holding starts over."""
    t = thresholds or Thresholds()
    pending = pending or {}
    raw = [f for a in apps for f in app_findings(a, now, t)]
    raw += [f for q in queues for f in queue_findings(q, now, t)]
    firing, held = [], {}
    for f in raw:
        wait = _for(f.rule, t)
        if not wait:
            firing.append(f)
            continue
        since = held[f.key] = pending.get(f.key, now)
        if now - since >= wait:
            firing.append(f)
    return Evaluation(sorted(firing, key=lambda f: f.key), held)


def _growth(samples: Sequence[tuple[float, int]], now: float, seconds: float) -> int | None:
    """How much a counter grew over the window: the newest sample minus the newest one
    at or before the window's start (None: no sample that old yet)."""
    ordered = sorted(s for s in samples if s[0] <= now)
    if not ordered:
        return None
    before = [s for s in ordered if s[0] <= now - seconds]
    if not before:
        return None
    return ordered[-1][1] - before[-1][1]


def _span(seconds: float) -> str:
    if seconds >= HOUR and seconds % HOUR == 0:
        return f"{seconds / HOUR:g} h"
    return f"{seconds / MIN:g} min"
