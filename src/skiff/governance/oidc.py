"""OIDC sign-in: verify ID tokens (JWTs) of one configured issuer with PyJWT.

The issuer's discovery document (``ISSUER/.well-known/openid-configuration``)
names its JWKS; both are fetched on first use and the keys cached
(:data:`JWKS_CACHE_SECONDS`; an unknown ``kid`` refetches, at most once per
:data:`MIN_REFETCH_SECONDS`, so a key rotation is picked up and a flood of
made-up key ids cannot make the server hammer the issuer). Only asymmetric
algorithms are accepted: with ``HS256`` the "key" would be public.

Every refusal is a 401 that says which check failed: expired, wrong audience,
wrong issuer, a signature no key of the issuer made, or not a JWT at all.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from skiff.errors import Unauthorized
from skiff.governance.identity import Principal, Role

JWKS_CACHE_SECONDS = 3600.0  # issuers rotate keys on the scale of days
MIN_REFETCH_SECONDS = 30.0
_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]
_FETCH_TIMEOUT = 5.0
_MAX_DOC_BYTES = 1 << 20


class OIDCRejected(Unauthorized):
    code = "oidc_rejected"


@dataclass(frozen=True)
class OIDCSettings:
    issuer: str
    audience: str
    groups_claim: str = "groups"
    #: group -> role for OIDC callers; the highest of their groups' wins
    roles: tuple[tuple[str, str], ...] = ()
    default_role: str = "viewer"


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


class OIDCVerifier:
    def __init__(self, settings: OIDCSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}
        self._fetched = 0.0

    def _get(self, url: str) -> dict:
        req = urllib.request.Request(url, headers={"accept": "application/json"})
        with urllib.request.urlopen(req, timeout=_FETCH_TIMEOUT) as resp:  # noqa: S310
            return json.loads(resp.read(_MAX_DOC_BYTES))

    def _refresh(self) -> None:
        import jwt

        issuer = self.settings.issuer.rstrip("/")
        try:
            doc = self._get(f"{issuer}/.well-known/openid-configuration")
            jwks = self._get(str(doc["jwks_uri"]))
            keys = {}
            for k in jwt.PyJWKSet.from_dict(jwks).keys:
                keys[k.key_id or ""] = k
        except Exception as exc:  # noqa: BLE001 - any failure: the caller cannot be verified
            raise OIDCRejected(f"cannot fetch the signing keys of the OIDC issuer {issuer} "
                               f"({type(exc).__name__}: {exc}); try again later",
                               reason="jwks_unavailable") from None
        self._keys = keys
        self._fetched = time.monotonic()

    def _key(self, kid: str | None) -> Any:
        with self._lock:
            age = time.monotonic() - self._fetched
            if not self._fetched or age > JWKS_CACHE_SECONDS or (
                    (kid or "") not in self._keys and age > MIN_REFETCH_SECONDS):
                self._refresh()
            key = self._keys.get(kid or "")
            if key is None and kid is None and len(self._keys) == 1:
                key = next(iter(self._keys.values()))
        if key is None:
            raise OIDCRejected(f"the token is signed with key {kid!r}, which the OIDC issuer "
                               f"{self.settings.issuer} does not publish (wrong key)",
                               reason="wrong_key")
        return key

    def verify(self, token: str) -> tuple[Principal, dict]:
        """The principal of a valid ID token, and its claims; OIDCRejected saying why not."""
        import jwt

        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise OIDCRejected("the bearer token is neither a Skiff token nor a JWT",
                               reason="malformed") from None
        key = self._key(header.get("kid"))
        try:
            claims = jwt.decode(token, key=key, algorithms=_ALGORITHMS, audience=s.audience,
                                issuer=s.issuer, options={"require": ["exp", "iss", "aud", "sub"]},
                                leeway=30)
        except jwt.ExpiredSignatureError:
            raise OIDCRejected("the OIDC token expired; sign in again",
                               code="token_expired", reason="expired") from None
        except jwt.InvalidAudienceError:
            raise OIDCRejected(f"the OIDC token is for another audience, not {s.audience!r} "
                               "(SKIFF_OIDC_AUDIENCE)", reason="wrong_audience") from None
        except jwt.InvalidIssuerError:
            raise OIDCRejected(f"the OIDC token was issued by another issuer, not "
                               f"{s.issuer} (SKIFF_OIDC_ISSUER)", reason="wrong_issuer") from None
        except jwt.InvalidSignatureError:
            raise OIDCRejected(f"the OIDC token's signature does not verify with the keys of "
                               f"{s.issuer} (wrong key)", reason="wrong_key") from None
        except jwt.PyJWTError as exc:
            raise OIDCRejected(f"the OIDC token is not valid: {exc}", reason="invalid") from None
        raw_groups = claims.get(s.groups_claim, [])
        if isinstance(raw_groups, str):
            raw_groups = [raw_groups]
        groups = frozenset(str(g) for g in raw_groups if isinstance(g, str | int))
        role = Role[s.default_role]
        for group, name in s.roles:
            if group in groups:
                role = max(role, Role[name])
        sub = str(claims["sub"])
        return Principal(f"oidc:{sub}", role, user=sub, groups=groups, via="oidc"), claims
