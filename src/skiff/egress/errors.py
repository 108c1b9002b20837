"""Errors of the egress proxy. Each one becomes the HTTP answer the app sees
from its proxy, so the app author reads what happened and what to change:

    SkiffError
    ├── ManifestError
    │   ├── InvalidEgressRule   422 invalid_egress_rule    a spec.egress entry does not parse
    │   └── ForbiddenEgressRule 422 egress_rule_forbidden  an entry names what the operator bans
    ├── EgressDenied            403 egress_denied          no rule allows the host:port
    │                               egress_private_address the name resolves to a private address
    │                               egress_forbidden_address loopback, link-local, metadata,
    │                                                      unspecified or a platform port
    ├── TooManyRequests
    │   └── EgressBusy          429 egress_busy            the app's connection cap is reached
    ├── EgressUnavailable       503 egress_unavailable     the proxy's global connection cap
    ├── BadProxyRequest         400 bad_proxy_request      not CONNECT and not absolute-form HTTP
    └── EgressUpstreamError     502 egress_resolve_failed  the name does not resolve
                                    egress_connect_failed  no address accepted the connection
"""

from __future__ import annotations

from ..errors import ManifestError, SkiffError, TooManyRequests


class InvalidEgressRule(ManifestError):
    code = "invalid_egress_rule"


class ForbiddenEgressRule(ManifestError):
    """spec.egress names a destination the platform bans (see ``guard``); the deploy fails."""

    code = "egress_rule_forbidden"


class EgressDenied(SkiffError):
    """Refused by policy. ``details["rule"]`` is the spec.egress entry that would allow it."""

    status = 403
    code = "egress_denied"


class EgressBusy(TooManyRequests):
    code = "egress_busy"


class EgressUnavailable(SkiffError):
    """Every app together holds as many egress connections as the platform's fds allow."""

    status = 503
    code = "egress_unavailable"


class BadProxyRequest(SkiffError):
    status = 400
    code = "bad_proxy_request"


class EgressUpstreamError(SkiffError):
    status = 502
    code = "egress_connect_failed"
