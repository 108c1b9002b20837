"""The queues a manifest claims by name: read by the event plane that wires and deletes
them, and by `skiff rm`, which says which ones go before it asks."""

from __future__ import annotations

from skiff.manifest.model import Manifest


def declared_queues(manifest: Manifest) -> dict[str, frozenset[str]]:
    """The queues an app's manifest claims, each with the apps it lets send to it."""
    name, spec = manifest.name, manifest.spec
    out: dict[str, frozenset[str]] = {}
    if spec.handler:
        out[f"{name}-dlq"] = out[f"{name}-events-dlq"] = frozenset()
        for trig in spec.triggers:
            if trig.queue:
                out[trig.queue] = frozenset()
                out[trig.dead_letter_queue or f"{trig.queue}-dlq"] = frozenset()
    for queue in spec.queues:
        out[queue.name] = frozenset(queue.allow_from)
    return out


def destinations(manifest: Manifest) -> set[str]:
    """The queues the platform sends to on the app's behalf (async results)."""
    cfg = manifest.spec.async_
    return {q for q in (cfg.on_success, cfg.on_failure) if q} if manifest.spec.handler else set()
