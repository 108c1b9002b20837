"""The registry of what is served: each app's locked :class:`Revision`, its pool
and static site, and the routes that lead to it (the gateway's ``Router``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from skiff.egress import EgressPolicy
from skiff.errors import Conflict, NotFound
from skiff.gateway.apiroutes import NO_ROUTES, ApiRoutes, compile_route
from skiff.gateway.routing import Match, Route, Router, conflict
from skiff.gateway.static import StaticSite
from skiff.instance import ZygoteSpec
from skiff.manifest import Manifest
from skiff.scheduler import Pool


@dataclass(frozen=True)
class Revision:
    """One revision of one app, locked once at deploy (or at restore and rollback).
    Everything after it (the pool's target, the load message, the egress policy, the
    routes, the event wiring) is made from this, so no two parts can disagree about
    what a revision is."""

    name: str
    digest: str
    kind: str | None  # detected by the trial instance (or stored); "static" without a handler
    manifest: Manifest  # normalized; its spec.kind is the detected kind once known
    code_dir: Path
    zygote: ZygoteSpec
    env: tuple[tuple[str, str], ...]  # spec.env, without secrets (those resolve at each start)
    triggers: tuple  # spec.triggers
    egress: EgressPolicy
    routes: tuple[Route, ...]
    api: ApiRoutes = NO_ROUTES  # spec.http.routes, compiled

    @classmethod
    def lock(cls, manifest: Manifest, digest: str, code_dir: Path, zygote: ZygoteSpec,
             kind: str | None) -> Revision:
        spec = manifest.spec
        return cls(name=manifest.name, digest=digest,
                   kind=kind if spec.handler else "static", manifest=manifest,
                   code_dir=code_dir, zygote=zygote, env=tuple(sorted(spec.env.items())),
                   triggers=tuple(spec.triggers), egress=EgressPolicy.parse(spec.egress),
                   routes=tuple(routes_of(manifest)),
                   api=ApiRoutes([compile_route(r.path, r.methods) for r in spec.http.routes]))

    @property
    def timeout(self) -> float:
        return self.manifest.spec.resources.timeout


def routes_of(manifest: Manifest) -> list[Route]:
    return [Route(manifest.name, host=r.host.lower() if r.host else None,
                  path=(r.path or "").rstrip("/")) for r in manifest.spec.routes]


@dataclass
class App:
    """An app as served now: its current revision and what serves it."""

    revision_: Revision
    pool: Pool | None  # None for a static-only app
    static: StaticSite | None

    @property
    def name(self) -> str:
        return self.revision_.name

    @property
    def revision(self) -> str:
        return self.revision_.digest

    @property
    def kind(self) -> str | None:
        return self.revision_.kind

    @property
    def manifest(self) -> Manifest:
        return self.revision_.manifest

    @property
    def code_dir(self) -> Path:
        return self.revision_.code_dir

    @property
    def zygote(self) -> ZygoteSpec:
        return self.revision_.zygote

    @property
    def payload_format(self) -> str:
        return self.revision_.manifest.spec.http.payload_format

    @property
    def api_routes(self) -> ApiRoutes:
        return self.revision_.api

    @property
    def serves(self) -> bool:
        """Whether it has a handler (else it serves only static files)."""
        return self.pool is not None

    @property
    def timeout(self) -> float:
        return self.pool.target.timeout if self.pool is not None else self.revision_.timeout


class Registry:
    """Apps by name and the router over their routes. Deploys of one app hold its
    lock; a route or queue is checked and switched without awaiting in between."""

    def __init__(self, router: Router, *, platform_host: str) -> None:
        self.router = router
        self.apps: dict[str, App] = {}
        self._platform_hosts = {platform_host.lower()}
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def get(self, name: str) -> App:
        app = self.apps.get(name)
        if app is None:
            raise NotFound(f"no app named {name!r} is deployed; see `skiff ls`",
                           code="app_not_found")
        return app

    def route(self, host: str, path: str) -> tuple[Match, App] | None:
        match = self.router.match(host, path)
        if match is None:
            return None
        return match, self.apps[match.app]

    def put(self, app: App) -> None:
        self.apps[app.name] = app
        self.router.set_app(app.name, list(app.revision_.routes))

    def remove(self, name: str) -> App:
        self.router.remove_app(name)
        return self.apps.pop(name)

    def withdraw_ungranted(self, name: str, grants: set[tuple[str, str | None, str]]
                           ) -> list[Route]:
        """Stop serving the routes of app ``name`` that overlap another's traffic and that
        ``grants`` (app, host, path) do not allow (any more); returns them. A revoke
        applies at once, and a restart serves what the grants allow now, not what they
        allowed at the deploy (the tenant decides when it redeploys). Others' routes held
        by a grant do not count against it: they were granted over it."""
        app = self.apps.get(name)
        if app is None:
            return []
        others = [r for r in self.router.routes if (r.app, r.host, r.path) not in grants]
        kept, dropped = [], []
        for route in app.revision_.routes:
            owner = None if (name, route.host, route.path) in grants else conflict(
                route, others, self.router.apps - {name}, platform_hosts=self._platform_hosts)
            (kept if owner is None else dropped).append(route)
        if dropped:
            self.router.set_app(name, kept)
        return dropped

    def check_routes(self, manifest: Manifest, granted: set[tuple[str | None, str]]) -> None:
        """Refuse a manifest whose routes belong to another app (409), unless granted."""
        name = manifest.name
        for route in routes_of(manifest):
            if (route.host, route.path) in granted:
                continue
            owner = conflict(route, self.router.routes, self.router.apps - {name},
                             platform_hosts=self._platform_hosts)
            if owner is not None:
                where = " ".join(x for x in (route.host and f"host {route.host}",
                                             f"path {route.path or '/'}") if x)
                raise Conflict(
                    f"route {where} of app {name} overlaps what {owner} serves; an app gets "
                    f"/{name}/, {name}.localhost and routes no other app has; an operator can "
                    f"allow this one with `skiff routes grant {name}"
                    + (f" --host {route.host}" if route.host else "")
                    + f" --path {route.path or '/'}`",
                    code="route_conflict", owner=owner, host=route.host, path=route.path or "/")
