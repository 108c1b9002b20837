"""What a Prometheus scrape reads of the platform (``skiff.observe.LiveSources``):
pools from the registry, queues from the broker, the async backlog from the event
plane. Called from the scrape's thread, so every collection is copied before it
is walked (the event loop changes them meanwhile)."""

from __future__ import annotations

from collections.abc import Iterable

from skiff.observe import Backlog, PoolState, QueueState
from skiff.platform.registry import Registry
from skiff.triggers import EventPlane


class LiveState:
    def __init__(self, registry: Registry, events: EventPlane) -> None:
        self._registry = registry
        self._events = events

    def pools(self) -> Iterable[PoolState]:
        for app in list(self._registry.apps.values()):
            pool = app.pool
            if pool is None:
                continue
            live = [i for i in list(pool.instances) if not i.dead]
            busy = sum(1 for i in live if i.inflight)
            yield PoolState(app=app.name, revision=pool.target.revision, idle=len(live) - busy,
                            busy=busy, starting=pool.starting, started=pool.stats.created)

    def memory(self) -> Iterable[tuple[str, str, int]]:
        out = []
        for app in list(self._registry.apps.values()):
            pool = app.pool
            if pool is None:
                continue
            for inst in list(pool.instances):
                cgroup = getattr(inst, "cgroup", None)
                peak = cgroup.memory_peak() if cgroup is not None and not inst.dead else None
                if peak:
                    out.append((app.name, inst.revision or pool.target.revision, peak))
        return out

    def queues(self) -> Iterable[QueueState]:
        return [QueueState(q.name, q.visible, q.in_flight, q.delayed, q.dead_letter_queue)
                for q in self._events.broker.queues()]

    def backlog(self) -> Iterable[Backlog]:
        return [Backlog(app, n, oldest) for app, n, oldest in self._events.backlog()]
