"""The alert rules as a table: records and samples at a moved clock in, what fires
out (skiff.observe.slo is pure: no clock, no storage)."""

from __future__ import annotations

import pytest

from skiff.observe.slo import (
    AppView,
    QueueView,
    Record,
    Thresholds,
    burn_rate,
    evaluate,
)

NOW = 1_000_000.0
MIN = 60.0


def recs(n: int, *, bad: int = 0, every: float = 1.0, start: float = NOW, ms: float = 5.0,
         cold: int = 0) -> list[Record]:
    """``n`` records one per ``every`` seconds back from ``start``; the first ``bad``
    are 5xx, the first ``cold`` cold."""
    return [Record(start - i * every, 500 if i < bad else 200, ms, i < cold)
            for i in range(n)]


def fired(*apps: AppView, queues: tuple[QueueView, ...] = (), now: float = NOW,
          pending: dict | None = None) -> list[tuple[str, str]]:
    return [(f.key, f.severity) for f in evaluate(apps, queues, now, pending).findings]


def test_burn_rate_is_the_bad_ratio_over_the_budget() -> None:
    assert burn_rate(1, 100, 0.99) == pytest.approx(1.0)
    assert burn_rate(72, 1000, 0.995) == pytest.approx(14.4)
    assert burn_rate(0, 0, 0.99) == 0.0


@pytest.mark.parametrize(("records", "expected"), [
    # no traffic, or too little to mean anything: nothing burns
    ([], []),
    (recs(9, bad=9), []),
    # 8 % failing for the whole hour: 16x on 1 h and on 5 min -> page (and error rate)
    ([Record(NOW - i, 500 if i % 25 < 2 else 200, 5.0) for i in range(3600)],
     [("error_rate:a", "warning"), ("slo_availability:a", "page")]),
    # a sharp outage in the last 5 min: 300 of 3600 in the hour = 8.3 % -> 16.7x on 1 h,
    # 100 % on 5 min -> page (and the error-rate rule)
    (recs(3600, bad=300), [("error_rate:a", "warning"), ("slo_availability:a", "page")]),
    # the same outage, ended 10 min ago: the 5 min window is clean, so the 1 h pair is
    # reset; 30 min (300 of 1200 bad) and 6 h (300 of 3600) still burn over 6x -> page
    ([Record(NOW - 600 - i, 500 if i < 300 else 200, 5.0) for i in range(3600)],
     [("slo_availability:a", "page")]),
    # 0.4 % failing: within a 99.5 % objective
    ([Record(NOW - i, 500 if i % 250 == 0 else 200, 5.0) for i in range(3000)], []),
])
def test_availability_burn_windows(records: list[Record], expected: list) -> None:
    """The 1 h / 5 min and 6 h / 30 min pairs at 14.4x and 6x page; both windows of a
    pair must burn."""
    assert fired(AppView("a", records, availability=99.5)) == expected


def test_a_slow_burn_is_a_ticket_not_a_page() -> None:
    """4 % failing for a day against 99 %: 4x on 24 h and 2 h (ticket at 3x), under the
    6x and 14.4x of the pages."""
    records = [Record(NOW - i * 30, 500 if i % 25 == 0 else 200, 5.0) for i in range(2880)]
    found = evaluate([AppView("a", records, availability=99.0)], [], NOW,
                     thresholds=Thresholds(error_rate=0.5)).findings  # the SLO's only
    assert [(f.key, f.severity, f.value) for f in found] == [("slo_availability:a", "ticket", 4.028)]  # 116 of 2880


def test_latency_slo_counts_slow_invocations_against_five_percent() -> None:
    """latencyP95Ms: 300 -> 95 % within 300 ms; everything at 400 ms burns 20x."""
    slow = [Record(NOW - i, 200, 400.0) for i in range(600)]
    fast = [Record(NOW - i, 200, 200.0) for i in range(600)]
    assert fired(AppView("a", slow, latency_p95_ms=300)) == [("slo_latency:a", "page")]
    assert fired(AppView("a", fast, latency_p95_ms=300)) == []


@pytest.mark.parametrize(("view", "expected"), [
    (AppView("a", recs(100, bad=5)), [("error_rate:a", "warning")]),  # 5 % of 5 min
    (AppView("a", recs(100, bad=4)), []),
    # p95 over 80 % of a 1 s timeout
    (AppView("a", recs(100, ms=850), timeout_s=1.0), [("latency_p95:a", "warning")]),
    (AppView("a", recs(100, ms=750), timeout_s=1.0), []),
    # 20 % cold over 15 min
    (AppView("a", recs(100, every=5, cold=20)), [("cold_starts:a", "warning")]),
    (AppView("a", recs(100, every=5, cold=19)), []),
    # 20 instances started in 15 min (samples of the pool's counter)
    (AppView("a", [], started=((NOW - 16 * MIN, 5), (NOW, 25))), [("instance_churn:a", "warning")]),
    (AppView("a", [], started=((NOW - 16 * MIN, 5), (NOW, 24))), []),
    (AppView("a", [], started=((NOW - 5 * MIN, 0), (NOW, 99))), []),  # no sample that old yet
    # the budget seam: none, under 90 %, at 90 %
    (AppView("a", [], budget_use=None), []),
    (AppView("a", [], budget_use=0.89), []),
    (AppView("a", [], budget_use=0.9), [("budget:a", "warning")]),
])
def test_platform_rules(view: AppView, expected: list) -> None:
    assert fired(view) == expected


def test_memory_high_fires_after_holding_fifteen_minutes() -> None:
    """The fullest instance at >= 90 % of the limit is pending at first, fires once it
    has held 15 min, and starts over when it drops under; no cgroup figure, no alert."""
    def app(used: float | None) -> AppView:
        return AppView("a", [], memory_limit_mb=256, memory_used_mb=used)

    first = evaluate([app(240)], [], NOW)
    assert first.findings == [] and first.pending == {"memory_high:a": NOW}
    mid = evaluate([app(250)], [], NOW + 14 * MIN, first.pending)
    assert mid.findings == [] and mid.pending == first.pending
    late = evaluate([app(231)], [], NOW + 15 * MIN, mid.pending)
    assert [(f.key, f.value, f.threshold) for f in late.findings] == [
        ("memory_high:a", 231, 230.4)]
    reset = evaluate([app(200)], [], NOW + 16 * MIN, late.pending)
    assert reset.findings == [] and reset.pending == {}
    assert evaluate([app(240)], [], NOW + 17 * MIN, reset.pending).findings == []
    assert evaluate([app(None)], [], NOW, {"memory_high:a": NOW - 3600}).findings == []


def test_dlq_growth() -> None:
    """A dead-letter queue that holds more than 15 min ago fires; steady does not."""
    grew = QueueView("jobs", "jobs-dlq", ((NOW - 20 * MIN, 1), (NOW - 10 * MIN, 2), (NOW, 4)))
    steady = QueueView("mail", "mail-dlq", ((NOW - 20 * MIN, 3), (NOW, 3)))
    young = QueueView("new", "new-dlq", ((NOW - MIN, 0), (NOW, 9)))
    assert fired(queues=(grew, steady, young)) == [("dlq_growth:jobs", "warning")]
    f = evaluate([], [grew], NOW).findings[0]
    assert f.value == 3 and "skiff queues peek jobs-dlq" in f.summary


def test_thresholds_are_the_operators() -> None:
    assert fired(AppView("a", recs(100, bad=2))) == []
    assert [f.key for f in evaluate([AppView("a", recs(100, bad=2))], [], NOW,
                                    thresholds=Thresholds(error_rate=0.02)).findings] \
        == ["error_rate:a"]
