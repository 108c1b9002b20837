"""The facts behind ``skiff inventory`` gathered from the parts (registry, lifecycle,
governor, invocation log, egress log, audit), and the drafts ``skiff discover
--register`` stores for their owners to claim.

A draft is a KV item in the platform's own namespace (``DRAFTS_NS``): stored on the
same backend as everything else (SQLite or Postgres, so every node sees it), never
deployed; a deploy of its name replaces it in the inventory. What a client sends as
finds is a stranger's input: counted, sized and validated before it is stored.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from skiff.egress import EgressPolicy
from skiff.errors import Conflict, NotFound, SkiffError
from skiff.governance import Governor, Principal, Role
from skiff.governance.inventory import DRAFTS_NS, MAX_RECORDS, app_row, inventory, last_deploy
from skiff.governance.lifecycle import Lifecycle
from skiff.platform.registry import Registry
from skiff.store import KV, Store

MAX_DRAFTS_PER_CALL = 500
MAX_DRAFTS = 5_000
EGRESS_LINES = 500  # per app, the newest
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_FIELDS = {"kind": 40, "path": 1024, "detail": 300, "owner": 254, "repo": 1024}
KINDS = {"lambda", "asgi", "wsgi", "functions-framework", "sam", "serverless", "docker",
         "skiff"}


class Inventory:
    def __init__(self, *, registry: Registry, store: Store, kv: KV, governor: Governor,
                 lifecycle: Lifecycle,
                 cost: Callable[[str, float, float], dict] | None = None) -> None:
        """``cost(app, cpu, now)``: the app's cost figures (``Spending.inventory_cost``)."""
        self._cost = cost
        self._registry = registry
        self._store = store
        self._kv = kv
        self._governor = governor
        self._lifecycle = lifecycle

    def build(self, now: float | None = None) -> dict:
        """Blocking (storage): run it off the loop."""
        now = time.time() if now is None else now
        apps = dict(self._registry.apps)
        violations: dict[str, list[dict]] = {}
        for v in self._governor.violations():
            violations.setdefault(v["app"], []).append(v)
        rows, egress, policies = [], {}, []
        for name, app in sorted(apps.items()):
            manifest = app.manifest
            rows.append(app_row(
                manifest, revision=app.revision, lifecycle=self._lifecycle.status(manifest),
                deployed=last_deploy(self._governor.audit.query(app=name, limit=200)),
                violations=violations.get(name, []),
                records=self._store.invocations(name, MAX_RECORDS), now=now,
                cost=self._cost(name, manifest.spec.resources.cpu, now) if self._cost else None))
            policies.append(EgressPolicy.parse(manifest.spec.egress))
            egress[name] = [(r["ts"], r["line"]) for r in self._store.logs(
                name, 0, EGRESS_LINES, "egress", newest=True)]
        return inventory(rows, self.drafts(), undeclared_egress(egress, policies), now)

    # -- drafts ------------------------------------------------------------------------
    def drafts(self) -> list[dict]:
        out, cursor = [], None
        while len(out) < MAX_DRAFTS:
            page = self._kv.query(DRAFTS_NS, limit=1000, cursor=cursor)
            out.extend(item.value for item in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        return out

    def register(self, finds: Any, actor: Principal) -> list[dict]:
        """Store each find as a draft (one per name; a later find of a name updates
        its draft unless it was claimed). Registered apps are skipped."""
        actor.require(Role.developer, "registering discovered apps")
        if not isinstance(finds, list) or len(finds) > MAX_DRAFTS_PER_CALL:
            raise SkiffError(f"send a JSON list of at most {MAX_DRAFTS_PER_CALL} finds "
                             "(`skiff discover --json` prints them)", code="bad_drafts",
                             status=400)
        drafts = [_draft(f, i) for i, f in enumerate(finds)]
        now = time.time()
        out, stored = [], len(self.drafts())
        for d in drafts:
            if d["name"] in self._registry.apps:
                continue
            old = self._kv.get(DRAFTS_NS, d["name"])
            if old is not None and old.value.get("claimed_by"):
                out.append(old.value)
                continue
            if old is None:
                if stored >= MAX_DRAFTS:
                    raise SkiffError(f"{MAX_DRAFTS} drafts are stored already: claim or "
                                     "deploy some first", code="too_many_drafts", status=409)
                stored += 1
            d |= {"registered": now, "registered_by": actor.name, "claimed_by": None,
                  "guessed_owner": d["owner"]}
            self._kv.put(DRAFTS_NS, d["name"], d)
            self._governor.record(actor, "draft.register", d["name"], "allowed",
                                  f"{d['kind']} at {d['path']}", app=d["name"],
                                  owner=d["owner"])
            out.append(d)
        return out

    def claim(self, name: str, actor: Principal) -> dict:
        """The draft becomes ``actor``'s: its owner is the claimer from now on; their
        deploy of the name makes it an app."""
        actor.require(Role.developer, "claiming a draft")
        item = self._kv.get(DRAFTS_NS, name)
        if item is None:
            raise NotFound(f"no draft named {name!r}: `skiff inventory` lists drafts "
                           "(status draft); `skiff discover --register` records them",
                           code="draft_not_found")
        owner = f"user:{actor.user}" if actor.user else actor.name
        claimed = item.value.get("claimed_by")
        if claimed and claimed != owner and actor.role < Role.operator:
            raise Conflict(f"draft {name} is claimed by {claimed} already; ask them or an "
                           "operator", code="draft_claimed", owner=claimed)
        draft = item.value | {"claimed_by": owner}
        self._kv.put(DRAFTS_NS, name, draft, if_version=item.version)
        self._governor.record(actor, "draft.claim", name, "allowed",
                              f"claimed by {owner} ({draft['kind']} at {draft['path']})",
                              app=name)
        return draft | {"next": f"deploy it with metadata.name: {name} and "
                                f"metadata.owner: {owner} (`skiff deploy DIR`)"}


def check_claim(kv: KV, name: str, owner: str | None, actor: Principal | None) -> None:
    """A claimed draft's name is its claimer's: a first deploy of it under another owner
    is refused (an operator may), as a deploy over another owner's app is."""
    item = kv.get(DRAFTS_NS, name)
    claimed = item.value.get("claimed_by") if item is not None else None
    if not claimed or claimed == owner or (actor is not None and actor.role >= Role.operator):
        return
    raise Conflict(f"app name {name} is a draft claimed by {claimed}; deploy under another "
                   "name, or ask them or an operator", code="draft_claimed", owner=claimed)


def _draft(find: Any, index: int) -> dict:
    if not isinstance(find, dict):
        raise SkiffError(f"find {index} must be an object with name, kind and path",
                         code="bad_drafts", status=400)
    name = find.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise SkiffError(f"find {index}: name must be an app name (lowercase letters, digits "
                         f"and '-'), got {name!r}", code="bad_drafts", status=400)
    out: dict[str, Any] = {"name": name}
    for key, limit in _FIELDS.items():
        value = find.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise SkiffError(f"find {index}: {key} must be text of at most {limit} characters",
                             code="bad_drafts", status=400)
        out[key] = value
    if out["kind"] not in KINDS:
        raise SkiffError(f"find {index}: kind must be one of {', '.join(sorted(KINDS))}",
                         code="bad_drafts", status=400)
    if not out["path"]:
        raise SkiffError(f"find {index}: path is required", code="bad_drafts", status=400)
    return out


# -- the egress log: hosts apps tried that no app declares ------------------------------------
_EGRESS_LINE = re.compile(r"^(?P<method>[A-Z]+) (?P<host>[^\s:]+|\[[^\]]+\]):(?P<port>\d+) ")


def egress_host(line: str) -> tuple[str, int, bool] | None:
    """(host, port, allowed) of one egress audit line (``LogSink.egress``)."""
    m = _EGRESS_LINE.match(line)
    if m is None:
        return None
    return m["host"].lower().strip("[]"), int(m["port"]), " allowed " in line


def undeclared_egress(lines: dict[str, list[tuple[float, str]]],
                      policies: list[EgressPolicy]) -> list[dict]:
    """Hosts apps tried to reach that no app's spec.egress allows, judged by the egress
    proxy's own rules: ``lines`` is each app's egress log lines (time, text)."""
    hosts: dict[tuple[str, int], dict] = {}
    for app, entries in sorted(lines.items()):
        for ts, line in entries:
            parsed = egress_host(line)
            if parsed is None or any(p.check(parsed[0], parsed[1]).allowed for p in policies):
                continue
            host, port, allowed = parsed
            row = hosts.setdefault((host, port), {"host": host, "port": port, "apps": [],
                                                  "attempts": 0, "allowed": 0, "last": ts})
            row["attempts"] += 1
            row["allowed"] += allowed  # through the operator's SKIFF_EGRESS_ALLOW
            row["last"] = max(row["last"], ts)
            if app not in row["apps"]:
                row["apps"].append(app)
    return sorted(hosts.values(), key=lambda r: (-r["attempts"], r["host"], r["port"]))
