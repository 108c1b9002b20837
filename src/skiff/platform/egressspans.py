"""Egress connection spans: each attempt through the egress proxy, allowed or denied,
becomes a client span, the child of the handler span of the request its instance
was serving.

Threat model: the app is hostile, so nothing it sends names the request (no header,
no traceparent it puts on its proxy request). The parent comes from what the gateway
knows: the kernel's pid of the process that connected (``SO_PEERCRED`` on the app's
own unix socket), matched to one of that app's instances (the pid itself or one of
its ancestors: a subprocess the handler started is still that instance), and the
requests that instance has been sent and not answered. When that is not exactly one
traced request (an ASGI app serving several at once, a connection from a background
thread between requests, a pid no instance owns) the parent is ambiguous: the span is
emitted with the app's attributes and no parent (the root of its own trace) rather
than put under a request it may not belong to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from skiff.egress import EgressEvent
from skiff.observe import Tracing
from skiff.platform.registry import Registry

#: How many ancestors of the connecting process are looked at for an instance's pid
#: (the instance itself, a shell it ran, the command that shell ran).
_ANCESTORS = 4


def parent_of_requests(requests: Iterable[str], handler_of: Callable[[str], str | None]) -> str:
    """The parent of an instance's connection: the handler span of the one request it
    is serving; "" when it serves none, several, or an untraced one."""
    only = None
    for n, rid in enumerate(requests):
        if n:
            return ""
        only = rid
    return (handler_of(only) or "") if only is not None else ""


def span_attributes(ev: EgressEvent) -> dict[str, Any]:
    """What an egress span says (OpenTelemetry's server.* names, Skiff's for the rest)."""
    attrs: dict[str, Any] = {"faas.name": ev.app, "server.address": ev.host,
                             "server.port": ev.port, "skiff.egress.allowed": ev.allowed,
                             "skiff.egress.reason": ev.reason,
                             "skiff.egress.bytes_up": ev.bytes_up,
                             "skiff.egress.bytes_down": ev.bytes_down}
    if ev.address:
        attrs["network.peer.address"] = ev.address
    if ev.rule:
        attrs["skiff.egress.rule"] = ev.rule
    if ev.detail:
        attrs["skiff.egress.detail"] = ev.detail
    return attrs


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: the rest follows the last ')'
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[1]) if len(fields) > 1 else None


class EgressSpans:
    """``parent_of`` for the proxy (asked when a connection's head arrives) and
    ``after_egress`` (when it ends) that emits its span. ``handler_of``: a request
    id -> its handler span's traceparent, while it runs."""

    def __init__(self, registry: Registry, tracing: Tracing,
                 handler_of: Callable[[str], str | None],
                 ppid: Callable[[int], int | None] = _ppid) -> None:
        self._registry = registry
        self._tracing = tracing
        self._handler_of = handler_of
        self._ppid = ppid

    def parent_of(self, app: str, pid: int | None) -> str:
        if pid is None or not self._tracing.recording:
            return ""
        deployed = self._registry.apps.get(app)
        pool = deployed.pool if deployed is not None else None
        if pool is None:
            return ""
        by_pid: Mapping[int, Any] = {inst.pid: inst for inst in (*pool.instances, *pool.draining)
                                     if inst.pid}
        for _ in range(_ANCESTORS):
            inst = by_pid.get(pid)
            if inst is not None:
                return parent_of_requests(inst.requests(), self._handler_of)
            parent = self._ppid(pid)
            if not parent or parent == pid:
                return ""
            pid = parent
        return ""

    def after_egress(self, ev: EgressEvent) -> None:
        tracing = self._tracing
        if not tracing.recording or not ev.host:  # a cap refusal has no destination
            return
        name, attrs = f"egress {ev.host}:{ev.port}", span_attributes(ev)
        span = (tracing.child(name, ev.traceparent, kind="client", attributes=attrs)
                if ev.traceparent else tracing.span(name, None, kind="client", attributes=attrs))
        if span is None:
            return
        start = int(ev.ts * 1e9)
        failed = not ev.allowed or ev.reason in ("resolve_failed", "connect_failed",
                                                  "internal_error")
        span.end(0, ev.reason if failed else None, start_ns=start,
                 end_ns=start + int(ev.duration_ms * 1e6))
