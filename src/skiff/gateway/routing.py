"""Host and path routing from a request to an app and its mount point."""

from __future__ import annotations

from dataclasses import dataclass


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


class Router:
    """Every app answers at ``/<app>/...`` and ``<app>.localhost``; a manifest
    may add routes by host and/or path prefix. The longest prefix wins."""

    def __init__(self) -> None:
        self._apps: set[str] = set()
        self._routes: list[Route] = []

    def set_app(self, app: str, routes: list[Route]) -> None:
        self._apps.add(app)
        self._routes = [r for r in self._routes if r.app != app] + routes
        self._routes.sort(key=lambda r: (r.host is None, -len(r.path)))

    def remove_app(self, app: str) -> None:
        self._apps.discard(app)
        self._routes = [r for r in self._routes if r.app != app]

    def match(self, host: str, path: str) -> Match | None:
        host = host.rsplit(":", 1)[0].lower() if host and not host.startswith("[") else host
        for r in self._routes:
            if r.host is not None and r.host != host:
                continue
            if r.path and not (path == r.path or path.startswith(r.path + "/")):
                continue
            return Match(r.app, r.path, path[len(r.path):] or "/")
        if host.endswith(".localhost"):
            name = host[: -len(".localhost")]
            if name in self._apps:
                return Match(name, "", path)
        name, sep, rest = path[1:].partition("/")
        if name in self._apps:
            return Match(name, "/" + name, "/" + rest if sep else "/")
        return None
