"""The autoscaling decision as a pure function of a pool's state, so it can be
tested against tables without processes or clocks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class InstanceView:
    id: str
    inflight: int
    idle_since: float  # monotonic time of last completion (or creation)


@dataclass(frozen=True)
class PoolView:
    instances: tuple[InstanceView, ...]
    starting: int
    waiting: int
    concurrency: int
    min_instances: int
    max_instances: int
    idle_timeout: float
    stopping: int = 0  # asked to stop or killed, not yet gone: they still hold a slot


@dataclass(frozen=True)
class Plan:
    start: int = 0
    stop: tuple[str, ...] = ()


def plan(pool: PoolView, now: float) -> Plan:
    """How many instances to start and which idle ones to stop.

    Start enough to absorb the waiting requests (beyond what instances already
    starting will absorb), and up to ``min_instances``; never beyond
    ``max_instances``, which counts instances still stopping. Stop instances idle for longer than ``idle_timeout``,
    longest idle first, but keep ``min_instances``.
    """
    total = len(pool.instances) + pool.starting
    free = sum(max(0, pool.concurrency - i.inflight) for i in pool.instances)
    unserved = max(0, pool.waiting - free - pool.starting * pool.concurrency)
    want = max(math.ceil(unserved / pool.concurrency), pool.min_instances - total)
    start = max(0, min(want, pool.max_instances - total - pool.stopping))

    idle = sorted((i for i in pool.instances
                   if i.inflight == 0 and now - i.idle_since >= pool.idle_timeout),
                  key=lambda i: i.idle_since)
    removable = max(0, len(pool.instances) - pool.min_instances)
    stop = tuple(i.id for i in idle[:removable]) if pool.waiting == 0 else ()
    return Plan(start=start, stop=stop)


@dataclass(frozen=True)
class WarmWindow:
    schedule: str  # 5-field cron, local time
    duration: float  # seconds
    min_instances: int


def warm_minimum(base: int, windows: tuple[WarmWindow, ...], now: datetime) -> int:
    """``minInstances`` in force at ``now``: the base, raised by any open window."""
    if not windows:
        return base
    from croniter import croniter

    best = base
    for w in windows:
        # the latest opening at or before now (croniter's prev is strictly before its start)
        opened = croniter(w.schedule, now + timedelta(seconds=1)).get_prev(datetime)
        if now < opened + timedelta(seconds=w.duration):
            best = max(best, w.min_instances)
    return best
