"""Errors of the egress proxy. Each one becomes the HTTP answer the app sees
from its proxy, so the app author reads what happened and what to change:

    SkiffError
    ├── ManifestError
    │   └── InvalidEgressRule   422 invalid_egress_rule    a spec.egress entry does not parse
    ├── EgressDenied            403 egress_denied          no rule allows the host:port
    │                               egress_private_address the name resolves to a private address
    ├── TooManyRequests
    │   └── EgressBusy          429 egress_busy            the app's connection cap is reached
    ├── BadProxyRequest         400 bad_proxy_request      not CONNECT and not absolute-form HTTP
    └── EgressUpstreamError     502 egress_resolve_failed  the name does not resolve
                                    egress_connect_failed  no address accepted the connection
"""

from __future__ import annotations

from ..errors import ManifestError, SkiffError, TooManyRequests


class InvalidEgressRule(ManifestError):
    code = "invalid_egress_rule"


class EgressDenied(SkiffError):
    """Refused by policy. ``details["rule"]`` is the spec.egress entry that would allow it."""

    status = 403
    code = "egress_denied"


class EgressBusy(TooManyRequests):
    code = "egress_busy"


class BadProxyRequest(SkiffError):
    status = 400
    code = "bad_proxy_request"


class EgressUpstreamError(SkiffError):
    status = 502
    code = "egress_connect_failed"
