"""Budgets: the pure verdict (usage, budget, now) table-tested at the edges of its
thresholds and its month, what a client may send as a budget, and the contract
every BudgetRows backend keeps (SQLite's governance.db and Postgres)."""

from __future__ import annotations

import calendar
import threading

import pytest

from skiff.errors import SkiffError
from skiff.governance.budgets import (
    Budget,
    BudgetRows,
    SQLiteBudgetRows,
    budget,
    evaluate,
    exceeded_error,
    period,
)
from tests.postgres import contract_backends, pg_database  # noqa: F401 - a fixture

MAR_15 = float(calendar.timegm((2026, 3, 15, 12, 0, 0)))
MAR_1 = float(calendar.timegm((2026, 3, 1, 0, 0, 0)))
APR_1 = float(calendar.timegm((2026, 4, 1, 0, 0, 0)))
B = Budget("user:alice", "requests", 100.0, "throttle")


@pytest.mark.parametrize(("now", "expected"), [
    (MAR_15, (MAR_1, APR_1)),
    (MAR_1, (MAR_1, APR_1)),  # the first second belongs to the month
    (APR_1 - 0.001, (MAR_1, APR_1)),
    (float(calendar.timegm((2026, 12, 31, 23, 59, 59))),
     (float(calendar.timegm((2026, 12, 1, 0, 0, 0))),
      float(calendar.timegm((2027, 1, 1, 0, 0, 0))))),  # December runs into next year
])
def test_a_period_is_the_calendar_month_utc(now: float, expected: tuple) -> None:
    assert period(now) == expected


@pytest.mark.parametrize(("used", "notified", "action", "notify", "enforced"), [
    (79.9, (), "throttle", None, None),
    (80, (), "throttle", 80, None),  # 80 % exactly: told
    (95, (80,), "throttle", None, None),  # told already
    (100, (80,), "throttle", 100, "throttle"),
    (250, (), "throttle", 100, "throttle"),  # past both at once: the nearer only
    (250, (80, 100), "throttle", None, "throttle"),
    (10, (80, 100), "throttle", None, "throttle"),  # over this month: stays so
    (100, (), "scale-to-zero", 100, "scale-to-zero"),
    (100, (), "notify", 100, None),  # notify only: nothing enforced
    (90, (100,), "notify", None, None),
])
def test_the_verdict_of_a_budget(used: float, notified: tuple, action: str,
                                 notify: int | None, enforced: str | None) -> None:
    b = Budget("user:alice", "requests", 100.0, action)
    v = evaluate(used, b, MAR_15, notified)
    assert (v.notify, v.action) == (notify, enforced)
    assert (v.period_start, v.period_end) == (MAR_1, APR_1)
    assert v.percent == pytest.approx(used)


def test_a_throttled_app_is_told_when_it_serves_again() -> None:
    err = exceeded_error("shop", evaluate(120, B, MAR_15, (80, 100)))
    body = err.to_dict()["error"]
    assert (err.status, body["code"], body["budget"]) == (429, "budget_exceeded",
                                                          "user:alice/requests")
    assert body["used"] == 120 and body["limit"] == 100 and body["retry_after"] >= 1
    assert "2026-04-01 00:00 UTC" in body["message"]
    assert "skiff budgets set user:alice --requests N" in body["message"]


@pytest.mark.parametrize(("args", "fragment"), [
    (("alice", "cost", 5), "owner must be user:NAME or group:NAME"),
    (("user:alice", "dollars", 5), "metric must be one of cost, gb_s, requests"),
    (("user:alice", "cost", 0), "limit must be a number above 0"),
    (("user:alice", "cost", float("inf")), "limit must be a number above 0"),
    (("user:alice", "cost", True), "limit must be a number above 0"),
    (("user:alice", "cost", "5"), "limit must be a number above 0"),
    (("user:alice", "cost", 5, "delete"), "action must be one of throttle, scale-to-zero"),
])
def test_what_cannot_be_a_budget_is_refused(args: tuple, fragment: str) -> None:
    with pytest.raises(SkiffError) as bad:
        budget(*args)
    assert bad.value.code == "bad_budget" and bad.value.status == 400
    assert fragment in bad.value.message


budget_rows = contract_backends(
    "budget_rows", lambda tmp: SQLiteBudgetRows(tmp / "governance.db"),
    "skiff.governance.budgets:PostgresBudgetRows")

def test_budgets_are_one_per_owner_and_metric(budget_rows: BudgetRows) -> None:
    rows = budget_rows
    rows.put(Budget("user:alice", "cost", 5.0, "throttle", 1.0, "admin"))
    rows.put(Budget("user:alice", "requests", 1000.0, "notify", 2.0, "admin"))
    rows.put(Budget("group:ops", "gb_s", 50.0, "scale-to-zero", 3.0, "user:olga"))
    rows.put(Budget("user:alice", "cost", 8.0, "scale-to-zero", 4.0, "user:olga"))  # replaces
    assert rows.list() == [Budget("group:ops", "gb_s", 50.0, "scale-to-zero", 3.0, "user:olga"),
                           Budget("user:alice", "cost", 8.0, "scale-to-zero", 4.0, "user:olga"),
                           Budget("user:alice", "requests", 1000.0, "notify", 2.0, "admin")]
    assert rows.remove("user:alice", "requests") == 1
    assert rows.remove("user:alice", "requests") == 0
    assert rows.remove("user:bob", None) == 0
    rows.put(Budget("user:alice", "gb_s", 1.0, "notify"))
    assert rows.remove("user:alice", None) == 2
    assert [b.id for b in rows.list()] == ["group:ops/gb_s"]


def test_a_notice_is_claimed_once_a_month_and_a_new_limit_starts_over(
        budget_rows: BudgetRows) -> None:
    """Nodes racing for one notice: one wins; a changed budget is told anew."""
    rows = budget_rows
    b = Budget("user:alice", "cost", 5.0, "throttle")
    rows.put(b)
    wins: list[bool] = []
    threads = [threading.Thread(target=lambda: wins.append(rows.claim(b.id, MAR_1, 80)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]
    assert rows.claim(b.id, MAR_1, 100) is True
    assert rows.claim(b.id, APR_1, 80) is True  # another month
    assert rows.notified(b.id, MAR_1) == (80, 100)
    rows.put(Budget("user:alice", "cost", 10.0, "throttle"))
    assert rows.notified(b.id, MAR_1) == () and rows.notified(b.id, APR_1) == ()
    rows.claim(b.id, MAR_1, 80)
    rows.remove("user:alice", "cost")
    assert rows.notified(b.id, MAR_1) == ()
