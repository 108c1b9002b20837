"""The inventory: one row per app (and per draft) with what an operator asks of it —
who owns it, what it came from, who deployed it last, how long it has left, what
it may reach, whether it complies, how busy and how broken it is, what it costs.

:func:`app_row` is pure: the platform gathers the facts and passes them in
(golden-tested). Request counts come from the invocation records of the last
:data:`WINDOW` seconds, at most :data:`MAX_RECORDS` of them (an app past that is
shown as at least that busy: ``requests_capped``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from skiff.governance.audit import AuditEntry
from skiff.manifest import Manifest

WINDOW = 3600.0
MAX_RECORDS = 10_000
#: where a template an app came from is named (no manifest field for it yet)
TEMPLATE_LABEL = "templateRef"
DRAFTS_NS = "_skiff.drafts"  # the KV namespace of drafts: no app name starts with '_'
DEPLOY_ACTIONS = ("deploy", "rollback", "restore", "approval.approve")


def last_deploy(entries: Iterable[AuditEntry]) -> dict | None:
    """The newest allowed deploy (or rollback, restore) of the app's audit entries."""
    last = None
    for e in entries:
        if e.action in DEPLOY_ACTIONS and e.decision == "allowed":
            last = e
    if last is None:
        return None
    return {"at": last.ts, "by": last.actor, "action": last.action}


def traffic(records: list[dict], now: float, window: float = WINDOW) -> dict:
    """Requests, errors (status >= 500) and requests per minute over the last ``window``."""
    recent = [r for r in records if now - window <= r["ts"] <= now]
    errors = sum(1 for r in recent if r["status"] >= 500)
    return {"requests": len(recent), "errors": errors,
            "rate_per_min": round(len(recent) / (window / 60), 2),
            "requests_capped": len(records) >= MAX_RECORDS and len(recent) == len(records)}


def scopes(manifest: Manifest) -> dict:
    spec = manifest.spec
    routes = [f"{r.host or ''}{r.path or ''}" for r in spec.routes]
    return {"egress": list(spec.egress), "secrets": [s.ref for s in spec.secrets],
            "routes": routes}


def app_row(manifest: Manifest, *, revision: str, lifecycle: dict, deployed: dict | None,
            violations: list[dict], records: list[dict], now: float,
            cost: dict | None = None) -> dict[str, Any]:
    """One app's inventory row. ``lifecycle``: ``Lifecycle.status``; ``violations``:
    this app's ``Governor.violations``; ``records``: its invocation records, newest
    first; ``cost``: the cost model's figures, None until one exists."""
    expires = lifecycle.get("expires")
    modes = {v.get("enforcement") for v in violations}
    status = next((m for m in ("deny", "warn", "audit") if m in modes), "ok")
    return {
        "app": manifest.name, "status": "running", "revision": revision,
        "owner": manifest.metadata.owner,
        "template": manifest.metadata.labels.get(TEMPLATE_LABEL),
        "last_deploy": deployed,
        "ttl_days": lifecycle.get("ttl_days"), "expires": expires,
        "ttl_left_days": None if expires is None else round((expires - now) / 86400, 1),
        "scopes": scopes(manifest),
        "policy": {"status": status,
                   "violations": [v["policy"] for v in violations]},
        **traffic(records, now),
        "cost": cost,
    }


def draft_row(draft: dict, now: float) -> dict[str, Any]:
    """A registered find: stored, not deployed, waiting for its owner to claim it."""
    return {
        "app": draft["name"], "status": "draft", "revision": None,
        "owner": draft.get("claimed_by") or draft.get("owner"),
        "template": None, "last_deploy": None, "ttl_days": None, "expires": None,
        "ttl_left_days": None, "scopes": {"egress": [], "secrets": [], "routes": []},
        "policy": {"status": "unknown", "violations": []},
        "requests": 0, "errors": 0, "rate_per_min": 0.0, "requests_capped": False,
        "cost": None,
        "draft": {k: draft.get(k) for k in ("kind", "path", "detail", "repo", "registered",
                                            "registered_by", "claimed_by", "guessed_owner")},
    }


def inventory(apps: list[dict], drafts: list[dict], undeclared: list[dict],
              now: float) -> dict:
    """The whole answer of GET /inventory: apps, then drafts no app has replaced yet."""
    names = {a["app"] for a in apps}
    rows = sorted(apps, key=lambda a: a["app"]) + [
        draft_row(d, now) for d in sorted(drafts, key=lambda d: d["name"])
        if d["name"] not in names]
    return {"generated": now, "window_s": WINDOW, "apps": rows,
            "undeclared_egress": undeclared}
