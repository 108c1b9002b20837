"""The record of one egress attempt, handed to ``on_event`` when it ends.

Denied attempts are recorded like allowed ones: the operator's audit trail
and the app author's "why can't my app reach X" both start here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Reason = Literal[
    "closed",                # allowed; both sides finished
    "idle_timeout",          # allowed; nothing moved for idle_timeout seconds
    "aborted",               # allowed; the listener or the proxy was closed
    "resolve_failed",        # allowed by a rule; the name did not resolve
    "connect_failed",        # allowed by a rule; no address accepted the connection
    "not_allowed",           # denied: no spec.egress entry matches host:port
    "private_address",       # denied: the name resolves only to private addresses
    "forbidden_address",     # denied: a destination no manifest can grant (see guard)
    "too_many_connections",  # denied: the app is at its concurrent connection cap
    "proxy_full",            # denied: all apps together are at the proxy's connection cap
    "bad_request",           # denied: not CONNECT nor absolute-form HTTP, or no head in time
    "internal_error",        # the proxy itself failed on this connection (logged)
]


@dataclass(frozen=True, slots=True)
class EgressEvent:
    """One connection attempt through the proxy.

    ``rule`` is the spec.egress entry that allowed the attempt; for one denied
    by policy (not_allowed, private_address) the entry that would allow it; for
    too_many_connections the entry that matched. ``bytes_up``
    counts what went to the upstream (for plain HTTP, the rewritten request
    head too), ``bytes_down`` what came back. ``ts`` is the wall-clock start
    (epoch seconds); ``address`` the IP actually connected to, if any.
    ``detail`` says more about a denial (what the address is; which cap). Cap
    refusals happen before a request head is read (no host), and are reported
    at most once a second per app: ``suppressed`` counts the refusals folded
    into this event. ``traceparent`` is the span the platform named as the
    attempt's parent when its head arrived (``EgressProxy.parent_of``), "" for none.
    """

    app: str
    host: str
    port: int
    allowed: bool
    rule: str | None
    reason: Reason
    bytes_up: int
    bytes_down: int
    duration_ms: float
    ts: float
    address: str | None = None
    method: str = "CONNECT"
    detail: str = ""
    suppressed: int = 0
    traceparent: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
