"""Host and path routing from a request to an app and its mount point.

Routes are owned. Every deployed app answers at ``/<app>/...`` and at
``<app>.localhost``; those owned defaults belong to that app alone and win
over any manifest route. A manifest may add routes by host and/or path
prefix, but a route that would take traffic another app owns is refused at
deploy (:func:`conflict`), unless the operator granted it:

- a host another app already routes (a host has one app), a ``*.localhost``
  name (the owned-default namespace, reserved even for names not deployed yet:
  the day that app deploys the name is its own), ``localhost`` itself, an IP
  literal or the address the server binds (they reach every app's owned paths);
- a path-only route equal to or nested in another deployed app's ``/<app>``,
  equal to, nested in or over another app's path-only route, or the catch-all
  ``/`` (it is over every path).

At match time, in order: ``<app>.localhost`` of a deployed app (only that
app's own host routes may refine it); host routes (a host belongs to one app,
so its owner also has ``/<other>/`` on it); the owned ``/<app>/`` paths; then
path-only routes. Within a step the longest prefix wins.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

LOCALHOST = "localhost"


@dataclass(frozen=True)
class Route:
    app: str
    host: str | None = None  # exact host name, lowercase, no port
    path: str = ""  # mount prefix, "" or "/x" (no trailing slash)


@dataclass(frozen=True)
class Match:
    app: str
    mount: str  # the prefix the app is mounted under ("" at a host's root)
    path: str  # the request path relative to the mount, always starting with "/"


def _under(path: str, prefix: str) -> bool:
    """``path`` equals ``prefix`` or is nested in it, segment-wise ("" is over all)."""
    return not prefix or path == prefix or path.startswith(prefix + "/")


def _localhost_name(host: str) -> str | None:
    return host[: -len("." + LOCALHOST)] if host.endswith("." + LOCALHOST) else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def conflict(route: Route, routes: Iterable[Route], apps: Iterable[str],
             platform_hosts: Iterable[str] = ()) -> str | None:
    """Whom ``route`` would take traffic from: an app's name, ``"the platform"``,
    or None when it overlaps nothing it does not own. ``routes`` and ``apps``
    are what is served now (the route's own app may be among them)."""
    mine = route.app
    others = [r for r in routes if r.app != mine]
    if route.host is not None:
        host = route.host
        name = _localhost_name(host)
        if name is not None:
            return None if name == mine else name
        if host == LOCALHOST or _is_ip(host) or host in set(platform_hosts):
            return "the platform"
        return next((r.app for r in others if r.host == host), None)
    if not route.path:
        return next((a for a in sorted(apps) if a != mine), None) or "the platform"
    first = route.path[1:].split("/", 1)[0]
    if first != mine and first in set(apps):
        return first
    for r in others:
        if r.host is None and (_under(route.path, r.path) or _under(r.path, route.path)):
            return r.app
    return None


class Router:
    """See the module docstring for who owns what and the order of matching."""

    def __init__(self) -> None:
        self._apps: set[str] = set()
        self._routes: list[Route] = []

    @property
    def apps(self) -> frozenset[str]:
        return frozenset(self._apps)

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(self._routes)

    def set_app(self, app: str, routes: list[Route]) -> None:
        self._apps.add(app)
        self._routes = [r for r in self._routes if r.app != app] + routes
        # longest prefix first; equal prefixes (only by grant) in a stable order
        self._routes.sort(key=lambda r: (-len(r.path), r.app))

    def remove_app(self, app: str) -> None:
        self._apps.discard(app)
        self._routes = [r for r in self._routes if r.app != app]

    def match(self, host: str, path: str) -> Match | None:
        host = host.rsplit(":", 1)[0].lower() if host and not host.startswith("[") else host
        owner = _localhost_name(host) if host else None
        if owner not in self._apps:
            owner = None
        for r in self._routes:
            if r.host is None or r.host != host or (owner is not None and r.app != owner):
                continue
            if _under(path, r.path):
                return Match(r.app, r.path, path[len(r.path):] or "/")
        if owner is not None:
            return Match(owner, "", path)
        name, sep, rest = path[1:].partition("/")
        if name in self._apps:
            return Match(name, "/" + name, "/" + rest if sep else "/")
        for r in self._routes:
            if r.host is None and _under(path, r.path):
                return Match(r.app, r.path, path[len(r.path):] or "/")
        return None
