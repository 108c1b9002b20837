"""Sign-in: a bearer token to a :class:`Principal`, or a 401 that says why not.

In order: the bootstrap admin token (compared in constant time), a service
token (``skf_...``, looked up by digest), an OIDC ID token when an issuer is
configured. Each OIDC token's first successful use is a ``signin.oidc`` audit
entry (once per token, not per request); refusals are not recorded, since
anyone can send garbage and the audit is not a place an anonymous caller may
fill.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

from skiff.errors import Unauthorized
from skiff.governance.admission import Governor
from skiff.governance.identity import BOOTSTRAP, TOKEN_PREFIX, Principal, digest
from skiff.governance.oidc import OIDCVerifier, looks_like_jwt

UNAUTHORIZED = ("a valid admin token is required: send `Authorization: Bearer <token>` "
                "(the bootstrap token is in $SKIFF_HOME/admin-token; others come from "
                "`skiff tokens create` or your OIDC sign-in)")
#: OIDC tokens whose sign-in is recorded already (the newest ones; an older one seen
#: again is recorded again, which is harmless)
_SEEN_TOKENS = 10_000


class Access:
    def __init__(self, bootstrap_token: str, governor: Governor,
                 oidc: OIDCVerifier | None = None) -> None:
        self._bootstrap = bootstrap_token.encode()
        self.governor = governor
        self.oidc = oidc
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_lock = threading.Lock()  # sign-ins are verified in worker threads

    def needs_network(self, token: str) -> bool:
        """May authenticating ``token`` fetch the issuer's keys (run it off the loop)?"""
        return self.oidc is not None and looks_like_jwt(token)

    def authenticate(self, token: str) -> Principal:
        if not token:
            raise Unauthorized(UNAUTHORIZED)
        raw = token.encode("utf-8", "surrogateescape")
        if secrets.compare_digest(raw, self._bootstrap):
            return BOOTSTRAP
        if token.startswith(TOKEN_PREFIX):
            principal = self.governor.identities.authenticate_token(token)
            if principal is not None:
                return principal
            raise Unauthorized("unknown token: it is no token of this Skiff (revoked tokens "
                               "say so; see `skiff tokens ls`)", code="unknown_token")
        if self.oidc is not None and looks_like_jwt(token):
            principal, claims = self.oidc.verify(token)
            stored = self.governor.identities.rows.user_groups(principal.user or "") or []
            if stored:  # groups given in Skiff add to the issuer's
                principal = Principal(principal.name, principal.role, user=principal.user,
                                      groups=principal.groups | frozenset(stored), via="oidc")
            self._signed_in(token, principal, claims)
            return principal
        raise Unauthorized(UNAUTHORIZED)

    def _signed_in(self, token: str, principal: Principal, claims: dict) -> None:
        key = digest(token)
        with self._seen_lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return
            self._seen[key] = None
            if len(self._seen) > _SEEN_TOKENS:
                self._seen.popitem(last=False)
        self.governor.record(principal, "signin.oidc", principal.name, "allowed",
                             f"role {principal.role.name}",
                             groups=sorted(principal.groups), exp=claims.get("exp"))
