"""Egress: the allow-list of where an app may connect, and the proxy that
enforces it and records every attempt. Instances have no network of their
own; this proxy is their only way out.

    policy = EgressPolicy.parse(manifest.spec.egress)
    proxy = EgressProxy(on_event=record)
    listener = await proxy.serve_unix(path, app="shop", policy=policy)
    ...
    listener.close(); await listener.wait_closed()
"""

from .addresses import PRIVATE_NETWORKS, is_private
from .errors import (
    BadProxyRequest,
    EgressBusy,
    EgressDenied,
    EgressUnavailable,
    EgressUpstreamError,
    ForbiddenEgressRule,
    InvalidEgressRule,
)
from .events import EgressEvent, Reason
from .guard import ALLOW_VARIABLE, Guard, forbidden_class, parse_allowance
from .proxy import (
    EgressListener,
    EgressProxy,
    EventCallback,
    ParentOf,
    Resolver,
    fd_connection_budget,
    raise_fd_limit,
    system_resolver,
)
from .rules import Decision, EgressPolicy, Rule, normalize_host, parse_rule, suggest_rule

__all__ = [
    "ALLOW_VARIABLE",
    "PRIVATE_NETWORKS",
    "BadProxyRequest",
    "Decision",
    "EgressBusy",
    "EgressDenied",
    "EgressEvent",
    "EgressListener",
    "EgressPolicy",
    "EgressProxy",
    "EgressUnavailable",
    "EgressUpstreamError",
    "EventCallback",
    "ForbiddenEgressRule",
    "Guard",
    "InvalidEgressRule",
    "ParentOf",
    "Reason",
    "Resolver",
    "Rule",
    "fd_connection_budget",
    "forbidden_class",
    "is_private",
    "normalize_host",
    "parse_allowance",
    "parse_rule",
    "raise_fd_limit",
    "suggest_rule",
    "system_resolver",
]
