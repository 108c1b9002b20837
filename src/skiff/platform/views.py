"""What the admin API shows of an app: built from the registry and the records."""

from __future__ import annotations

import time

from skiff.platform.registry import App
from skiff.store import Store


def describe(app: App, store: Store) -> dict:
    pool = app.pool
    stats = store.stats(app.name)
    created = list(pool.stats.created_at) if pool else []
    now = time.time()
    return {
        "name": app.name, "revision": app.revision, "kind": app.kind,
        "owner": app.manifest.metadata.owner, "path": f"/{app.name}/",
        "host": f"{app.name}.localhost",
        "instances": len(pool.instances) if pool else 0,
        "starting": pool.starting if pool else 0,
        "waiting": len(pool.waiters) if pool else 0,
        "instances_created": pool.stats.created if pool else 0,
        "churn_per_min": sum(1 for t in created if now - t <= 60),
        "throttled": pool.stats.throttled if pool else 0,
        "environment": app.zygote.key,
        **stats,
        "cold_start_ratio": round(stats["cold_starts"] / stats["requests"], 4)
        if stats["requests"] else 0.0,
    }
