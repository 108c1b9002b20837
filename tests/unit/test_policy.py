"""The autoscaling policy, table-driven."""

from datetime import datetime

import pytest

from skiff.scheduler import InstanceView, Plan, PoolView, WarmWindow, plan, warm_minimum


def pool(instances=(), starting=0, waiting=0, concurrency=1, min_instances=0, max_instances=10,
         idle_timeout=300.0):
    return PoolView(tuple(InstanceView(*i) for i in instances), starting, waiting, concurrency,
                    min_instances, max_instances, idle_timeout)


@pytest.mark.parametrize(("view", "now", "expected"), [
    # nothing to do
    (pool(), 0, Plan()),
    # one waiting request, no instances → start one (cold start)
    (pool(waiting=1), 0, Plan(start=1)),
    # three waiting, one already starting → two more
    (pool(waiting=3, starting=1), 0, Plan(start=2)),
    # waiting requests are absorbed by free capacity
    (pool(instances=[("a", 0, 0.0)], waiting=1), 0, Plan()),
    # never beyond maxInstances
    (pool(instances=[("a", 1, 0.0)], waiting=50, max_instances=3), 0, Plan(start=2)),
    # concurrency: 10 waiting, 4 per instance → 3 instances
    (pool(waiting=10, concurrency=4), 0, Plan(start=3)),
    # min instances are started without traffic
    (pool(min_instances=2), 0, Plan(start=2)),
    # idle past the timeout → stopped, longest idle first
    (pool(instances=[("a", 0, 5.0), ("b", 0, 1.0)], idle_timeout=10), 20, Plan(stop=("b", "a"))),
    # busy instances are never stopped
    (pool(instances=[("a", 1, 0.0)], idle_timeout=10), 20, Plan()),
    # min instances survive idleness
    (pool(instances=[("a", 0, 0.0), ("b", 0, 1.0)], idle_timeout=10, min_instances=1), 20,
     Plan(stop=("a",))),
    # not yet idle long enough
    (pool(instances=[("a", 0, 15.0)], idle_timeout=10), 20, Plan()),
])
def test_plan(view, now, expected):
    """Each row: a pool state and the decision the policy must take."""
    assert plan(view, now) == expected


MON_0900 = datetime(2026, 11, 23, 9, 0)  # a Monday
OFFICE = WarmWindow("0 8 * * 1-5", 10 * 3600, 2)


@pytest.mark.parametrize(("now", "windows", "expected"), [
    (MON_0900, (), 0),
    (MON_0900, (OFFICE,), 2),  # inside 08:00-18:00 on a weekday
    (MON_0900.replace(hour=8, minute=0), (OFFICE,), 2),  # the opening minute itself
    (MON_0900.replace(hour=7, minute=59), (OFFICE,), 0),
    (MON_0900.replace(hour=18, minute=0), (OFFICE,), 0),  # closed after 10 h
    (datetime(2026, 11, 22, 9, 0), (OFFICE,), 0),  # Sunday
    (MON_0900, (OFFICE, WarmWindow("30 8 * * *", 3600, 5)), 5),  # the largest open window wins
])
def test_warm_minimum(now, windows, expected):
    """Warm windows raise minInstances only while open."""
    assert warm_minimum(0, windows, now) == expected


def test_warm_minimum_never_lowers_the_base():
    """A window asking for fewer instances than minInstances changes nothing."""
    assert warm_minimum(3, (OFFICE,), MON_0900) == 3
