"""An app's own API routes (``spec.http.routes``), matched the way API Gateway
matches them: ``/items/{id}`` binds one segment, ``/files/{proxy+}`` the rest of
the path; a route with no methods (``ANY``) takes every method; the most
specific route wins (literal segments before parameters, a greedy parameter
last). What matched becomes the event's ``routeKey`` (``"GET /items/{id}"``),
``resource`` and ``pathParameters``.

An app without routes is behind one ``$default`` route, as before. Matching is
pure and built once per revision; apps that declare no routes pay nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAM = re.compile(r"\{([A-Za-z0-9_.:-]+?)(\+?)\}")  # API Gateway allows - . : in names


@dataclass(frozen=True)
class ApiRoute:
    template: str  # "/items/{id}"
    methods: frozenset[str]  # empty: ANY
    pattern: re.Pattern[str]
    names: tuple[str, ...]  # of the pattern's groups, in order
    rank: tuple  # sort key: more literal segments first, greedy last


@dataclass(frozen=True)
class RouteMatch:
    route_key: str  # "GET /items/{id}", or "ANY /files/{proxy+}"
    resource: str  # "/items/{id}"
    params: dict[str, str]


@dataclass(frozen=True)
class MethodNotAllowed:
    allowed: tuple[str, ...]


def compile_route(template: str, methods: tuple[str, ...] = ()) -> ApiRoute:
    parts: list[str] = []
    names: list[str] = []
    pos = 0
    greedy = False
    for m in _PARAM.finditer(template):
        parts.append(re.escape(template[pos:m.start()]))
        names.append(m.group(1))
        greedy = greedy or bool(m.group(2))
        parts.append("(.+)" if m.group(2) else "([^/]+)")
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    segments = [s for s in template.split("/") if s]
    literals = sum(1 for s in segments if not _PARAM.fullmatch(s))
    return ApiRoute(template=template, methods=frozenset(m.upper() for m in methods),
                    pattern=re.compile("".join(parts)), names=tuple(names),
                    rank=(greedy, -literals, -len(segments), template))


class ApiRoutes:
    """The routes of one revision, most specific first."""

    __slots__ = ("routes",)

    def __init__(self, routes: list[ApiRoute]) -> None:
        self.routes = sorted(routes, key=lambda r: r.rank)

    def __bool__(self) -> bool:
        return bool(self.routes)

    def match(self, method: str, path: str) -> RouteMatch | MethodNotAllowed | None:
        """The route for ``method`` and ``path`` (relative to the app's mount); the
        methods the path allows when only the method is wrong; None when no route has
        the path."""
        path = path or "/"
        allowed: list[str] = []
        for route in self.routes:
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            if not route.methods or method in route.methods:
                # a route with several methods is one API Gateway route per method
                key = f"{method if route.methods else 'ANY'} {route.template}"
                return RouteMatch(route_key=key, resource=route.template,
                                  params=dict(zip(route.names, m.groups(), strict=True)))
            allowed.extend(sorted(route.methods))
        if allowed:
            return MethodNotAllowed(tuple(dict.fromkeys(allowed)))
        return None


NO_ROUTES = ApiRoutes([])
