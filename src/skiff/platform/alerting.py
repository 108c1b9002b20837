"""What one alert evaluation sees, read from the platform's parts: each served
app's recent invocation records, limits and ``spec.slo``, its pool's instance
starts and the memory its fullest instance holds (the kernel's count of the
instance's cgroup, never a figure the instance reports), and each queue's
dead-letter depth (skiff.observe.slo decides).

The budget seam: ``budget_use(app)`` returns the app's spend over its budget
(1.0 = all of it) or None; the cost/budget model passes it in when it exists,
and the ``budget`` rule fires from it. Until then it is None for every app.
"""

from __future__ import annotations

from collections.abc import Callable

from skiff.observe.slo import LONGEST, AppView, QueueView, Record
from skiff.platform.registry import Registry
from skiff.store import Store
from skiff.triggers import EventPlane

#: records read per app: the newest; an app with spec.slo gets more, for its long
#: windows (at more than this many invocations in 24 h its long windows are the
#: newest records only, which still holds the 1 h and 5 min pair at ~1 request/s)
RECORDS = 2000
SLO_RECORDS = 20000


def views(registry: Registry, store: Store, events: EventPlane, now: float,
          budget_use: Callable[[str], float | None] | None = None
          ) -> tuple[list[AppView], list[QueueView]]:
    """Blocking (the database): run it off the loop."""
    apps = []
    for app in list(registry.apps.values()):
        spec = app.manifest.spec
        slo = spec.slo
        limit = SLO_RECORDS if slo is not None else RECORDS
        records = [Record(r["ts"], r["status"], r["duration_ms"], bool(r["cold"]))
                   for r in store.invocations(app.name, limit) if r["ts"] > now - LONGEST]
        started = ((now, app.pool.stats.created),) if app.pool is not None else ()
        used = [b for i in (list(app.pool.instances) if app.pool is not None else ())
                if not i.dead and i.cgroup is not None
                and (b := i.cgroup.memory_bytes()) is not None]
        apps.append(AppView(
            app.name, records, timeout_s=spec.resources.timeout,
            memory_limit_mb=spec.resources.memory_mb,
            memory_used_mb=max(used) / (1024 * 1024) if used else None,
            availability=slo.availability if slo else None,
            latency_p95_ms=slo.latency_p95_ms if slo else None, started=started,
            budget_use=budget_use(app.name) if budget_use is not None else None))
    queues = list(events.broker.queues())
    visible = {q.name: q.visible for q in queues}
    dlqs = [QueueView(q.name, q.dead_letter_queue, ((now, visible.get(q.dead_letter_queue, 0)),))
            for q in queues if q.dead_letter_queue]
    return apps, dlqs
