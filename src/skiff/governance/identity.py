"""Who calls the admin API, and what they may do.

Principals come from three places: the bootstrap admin token
(``$SKIFF_HOME/admin-token`` or ``SKIFF_ADMIN_TOKEN``, always an admin), service
tokens made with ``skiff tokens create`` (stored as a sha256 digest, shown once),
and OIDC ID tokens of a configured issuer (see :mod:`skiff.governance.oidc`).

Roles are ordered: viewer (reads) < developer (deploys and manages the apps it
owns) < operator (every app; approvals later) < admin (identities, policies).

Why sha256 and not a password hash (argon2, bcrypt): a service token is 256
random bits, not a password a person chose, so nothing can be guessed faster
by a fast hash; a slow one would only add its cost (tens of milliseconds, by
design) to every admin call. The digest is also the lookup key, so a token is
found without comparing it against every row.

Identities are *enabled* once any user, group or service token exists, or an
OIDC issuer is configured. Until then the bootstrap admin is the only caller
and owners are not checked (the embedded default works as it always did).
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field

from skiff.errors import Forbidden, SkiffError, Unauthorized
from skiff.governance.identity_rows import IdentityRows, TokenRow

TOKEN_PREFIX = "skf_"  # recognisable in a leak scan, and never taken for a JWT
_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,99}$")


class Role(enum.IntEnum):
    viewer = 1
    developer = 2
    operator = 3
    admin = 4

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value]
        except KeyError:
            raise SkiffError(f"unknown role {value!r}: one of viewer, developer, operator, "
                             "admin", code="bad_role", status=400) from None


class TokenExpired(Unauthorized):
    code = "token_expired"


class RoleRequired(Forbidden):
    code = "role_required"


class NotOwner(Forbidden):
    code = "not_owner"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``name`` is how the audit names it."""

    name: str  # "admin", "user:alice", "oidc:SUB", "system:up"
    role: Role
    user: str | None = None  # the user it acts for (a token's, an OIDC subject)
    groups: frozenset[str] = field(default_factory=frozenset)
    via: str = "bootstrap"  # bootstrap, token, oidc, system

    def require(self, role: Role, doing: str) -> None:
        if self.role < role:
            raise RoleRequired(
                f"{doing} needs the {role.name} role; {self.name} has {self.role.name} (ask an "
                "admin: `skiff tokens create --user U --role " + role.name + "`)",
                required=role.name, role=self.role.name)

    def owns(self, owner: str | None) -> bool:
        """Is ``owner`` (``user:NAME`` / ``group:NAME``) this caller or one of its groups?"""
        if not owner:
            return False
        kind, _, name = owner.partition(":")
        return (kind == "user" and name == self.user) or (kind == "group" and name in self.groups)

    def to_dict(self) -> dict:
        return {"name": self.name, "role": self.role.name, "user": self.user,
                "groups": sorted(self.groups), "via": self.via}


BOOTSTRAP = Principal("admin", Role.admin)
SYSTEM_UP = Principal("system:up", Role.admin, via="system")  # `skiff up DIRS` at start
#: the TTL sweep (skiff.governance.lifecycle): archives what expired
SYSTEM_LIFECYCLE = Principal("system:lifecycle", Role.operator, via="system")
SYSTEM_BUDGETS = Principal("system:budgets", Role.operator, via="system")  # budget actions


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_owner(owner: str | None) -> tuple[str, str] | None:
    """("user"|"group", NAME) of a well-formed owner ref, else None."""
    if not owner:
        return None
    kind, sep, name = owner.partition(":")
    if not sep or kind not in ("user", "group") or not _NAME.match(name):
        return None
    return kind, name


def check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise SkiffError(f"a {what} name is lowercase letters, digits and . _ @ - (at most "
                         f"100), starting with a letter or digit; got {name!r}",
                         code="bad_name", status=400)
    return name


class Identities:
    """The users, groups and tokens over their rows; ``oidc`` only says whether an
    issuer is configured (it makes identities enabled)."""

    def __init__(self, rows: IdentityRows, *, oidc: bool = False) -> None:
        self.rows = rows
        self.oidc = oidc
        #: bumped by every change made through this object (what owners are known
        #: changes what running apps violate)
        self.version = 0

    @property
    def enabled(self) -> bool:
        return self.oidc or any(self.rows.counts())

    # -- tokens ------------------------------------------------------------------
    def create_token(self, user: str, role: Role, *, expires_in: float | None = None,
                     now: float | None = None) -> tuple[str, TokenRow]:
        """A new token for ``user`` (created if new); the token itself is returned
        once, here, and only its digest is kept."""
        check_name(user, "user")
        now = time.time() if now is None else now
        if self.rows.user_groups(user) is None:
            self.rows.add_user(user, [], now)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = TokenRow(id="tok_" + secrets.token_hex(6), digest=digest(token), user=user,
                       role=role.name, created=now,
                       expires=None if expires_in is None else now + expires_in, revoked=None)
        self.rows.add_token(row)
        self.version += 1
        return token, row

    def authenticate_token(self, token: str, *, now: float | None = None) -> Principal | None:
        """The principal of a service token; None when it is no token of ours
        (unknown), TokenExpired when it expired, Unauthorized when revoked."""
        row = self.rows.token(digest(token))
        if row is None:
            return None
        now = time.time() if now is None else now
        if row.revoked is not None:
            raise Unauthorized(f"token {row.id} was revoked; ask an admin for a new one",
                               code="token_revoked")
        if row.expires is not None and row.expires <= now:
            raise TokenExpired(
                f"token {row.id} expired at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(row.expires))}; "
                "ask an admin for a new one (`skiff tokens create`)", token_id=row.id)
        groups = self.rows.user_groups(row.user) or []
        return Principal(f"user:{row.user}", Role[row.role], user=row.user,
                         groups=frozenset(groups), via="token")

    def revoke(self, token_id: str) -> bool:
        self.version += 1
        return self.rows.revoke_token(token_id, time.time())

    def tokens(self) -> list[dict]:
        now = time.time()
        return [{"id": r.id, "user": r.user, "role": r.role, "created": r.created,
                 "expires": r.expires, "revoked": r.revoked,
                 "state": "revoked" if r.revoked else "expired"
                 if r.expires is not None and r.expires <= now else "active"}
                for r in self.rows.tokens()]

    # -- users and groups ------------------------------------------------------------
    def add_user(self, name: str, groups: list[str]) -> bool:
        check_name(name, "user")
        for g in groups:
            check_name(g, "group")
        self.version += 1
        return self.rows.add_user(name, groups, time.time())

    def remove_user(self, name: str) -> bool:
        self.version += 1
        return self.rows.remove_user(name)

    def add_group(self, name: str) -> bool:
        self.version += 1
        return self.rows.add_group(check_name(name, "group"), time.time())

    def users(self) -> list[dict]:
        return [{"name": n, "groups": g, "created": c} for n, g, c in self.rows.users()]

    def groups(self) -> list[dict]:
        return [{"name": n, "members": m} for n, m in self.rows.groups()]

    def owners(self) -> list[str]:
        """Every owner ref a manifest may name now."""
        return ([f"user:{n}" for n, _, _ in self.rows.users()]
                + [f"group:{n}" for n, _ in self.rows.groups()])

    def owner_known(self, owner: str | None) -> bool:
        parsed = parse_owner(owner)
        if parsed is None:
            return False
        kind, name = parsed
        if kind == "user":
            return self.rows.user_groups(name) is not None
        return any(g == name for g, _ in self.rows.groups())

    def owner_groups(self, owner: str | None) -> list[str]:
        """The groups an owner stands for: a user's groups, or the group itself."""
        parsed = parse_owner(owner)
        if parsed is None:
            return []
        kind, name = parsed
        return (self.rows.user_groups(name) or []) if kind == "user" else [name]
