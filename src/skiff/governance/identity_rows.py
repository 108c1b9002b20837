"""The identity storage interface: users, groups and their members, service tokens.

Primitives only; :class:`skiff.governance.identity.Identities` owns the logic
(hashing, expiry, roles). A token row holds the token's sha256, never the
token. :class:`SQLiteIdentityRows` (``governance.db`` beside ``skiff.db``,
created 0600) and
:class:`skiff.governance.identity_rows_postgres.PostgresIdentityRows`;
tests/governance/test_identity_rows_contract.py is the contract of both.
"""

from __future__ import annotations

import abc
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: str  # public: shown in `skiff tokens ls`, used to revoke
    digest: str  # sha256 hex of the token
    user: str
    role: str
    created: float
    expires: float | None
    revoked: float | None


class IdentityRows(abc.ABC):
    """Thread-safe, and safe across processes sharing the storage."""

    @abc.abstractmethod
    def add_user(self, name: str, groups: list[str], now: float) -> bool:
        """Create ``name`` (if new: return True) and make it a member of ``groups``
        (each created if new)."""

    @abc.abstractmethod
    def remove_user(self, name: str) -> bool:
        """Delete the user and its memberships (its tokens stay, for revocation)."""

    @abc.abstractmethod
    def add_group(self, name: str, now: float) -> bool: ...

    @abc.abstractmethod
    def users(self) -> list[tuple[str, list[str], float]]:
        """(name, groups, created) by name."""

    @abc.abstractmethod
    def groups(self) -> list[tuple[str, list[str]]]:
        """(name, members) by name."""

    @abc.abstractmethod
    def user_groups(self, name: str) -> list[str] | None:
        """The user's groups by name, or None when there is no such user."""

    @abc.abstractmethod
    def add_token(self, row: TokenRow) -> None: ...

    @abc.abstractmethod
    def token(self, digest: str) -> TokenRow | None: ...

    @abc.abstractmethod
    def tokens(self) -> list[TokenRow]:
        """Every token, oldest first (revoked ones too)."""

    @abc.abstractmethod
    def revoke_token(self, token_id: str, now: float) -> bool:
        """Mark it revoked; False when there is no such token or it is revoked already."""

    @abc.abstractmethod
    def counts(self) -> tuple[int, int, int]:
        """(users, groups, tokens not revoked)."""

    def close(self) -> None:  # noqa: B027 - a backend without resources needs nothing
        """Release the backend's resources."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS gov_users (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS gov_groups (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS gov_members (
  username TEXT NOT NULL, grp TEXT NOT NULL, PRIMARY KEY (username, grp));
CREATE TABLE IF NOT EXISTS gov_tokens (
  id TEXT PRIMARY KEY,
  digest TEXT NOT NULL UNIQUE,
  username TEXT NOT NULL,
  role TEXT NOT NULL,
  created REAL NOT NULL,
  expires REAL,
  revoked REAL
);
CREATE TABLE IF NOT EXISTS gov_audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  ts REAL NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  app TEXT,
  decision TEXT NOT NULL,
  reason TEXT NOT NULL,
  details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gov_audit_app ON gov_audit (app, seq);
"""


class SQLiteFile:
    """One connection to ``governance.db`` (WAL: the server and a local CLI share it)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # private: token digests and who did what
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)

    def write(self, work: Callable[[sqlite3.Connection], object]) -> object:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = work(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return out

    def read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class SQLiteIdentityRows(IdentityRows):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._f = SQLiteFile(path)

    def add_user(self, name: str, groups: list[str], now: float) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            created = db.execute("INSERT OR IGNORE INTO gov_users VALUES (?, ?)",
                                 (name, now)).rowcount == 1
            for group in groups:
                db.execute("INSERT OR IGNORE INTO gov_groups VALUES (?, ?)", (group, now))
                db.execute("INSERT OR IGNORE INTO gov_members VALUES (?, ?)", (name, group))
            return created
        return self._f.write(work)  # type: ignore[return-value]

    def remove_user(self, name: str) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM gov_members WHERE username = ?", (name,))
            return db.execute("DELETE FROM gov_users WHERE name = ?", (name,)).rowcount == 1
        return self._f.write(work)  # type: ignore[return-value]

    def add_group(self, name: str, now: float) -> bool:
        return self._f.write(lambda db: db.execute(  # type: ignore[return-value]
            "INSERT OR IGNORE INTO gov_groups VALUES (?, ?)", (name, now)).rowcount == 1)

    def users(self) -> list[tuple[str, list[str], float]]:
        members: dict[str, list[str]] = {}
        for user, group in self._f.read("SELECT username, grp FROM gov_members ORDER BY grp"):
            members.setdefault(user, []).append(group)
        return [(n, members.get(n, []), c)
                for n, c in self._f.read("SELECT name, created FROM gov_users ORDER BY name")]

    def groups(self) -> list[tuple[str, list[str]]]:
        members: dict[str, list[str]] = {}
        for user, group in self._f.read("SELECT username, grp FROM gov_members ORDER BY username"):
            members.setdefault(group, []).append(user)
        return [(n, members.get(n, []))
                for (n,) in self._f.read("SELECT name FROM gov_groups ORDER BY name")]

    def user_groups(self, name: str) -> list[str] | None:
        if not self._f.read("SELECT 1 FROM gov_users WHERE name = ?", (name,)):
            return None
        return [g for (g,) in self._f.read(
            "SELECT grp FROM gov_members WHERE username = ? ORDER BY grp", (name,))]

    def add_token(self, row: TokenRow) -> None:
        self._f.write(lambda db: db.execute(
            "INSERT INTO gov_tokens VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row.id, row.digest, row.user, row.role, row.created, row.expires, row.revoked)))

    def token(self, digest: str) -> TokenRow | None:
        rows = self._f.read("SELECT * FROM gov_tokens WHERE digest = ?", (digest,))
        return TokenRow(*rows[0]) if rows else None

    def tokens(self) -> list[TokenRow]:
        return [TokenRow(*r) for r in self._f.read(
            "SELECT * FROM gov_tokens ORDER BY created, id")]

    def revoke_token(self, token_id: str, now: float) -> bool:
        return self._f.write(lambda db: db.execute(  # type: ignore[return-value]
            "UPDATE gov_tokens SET revoked = ? WHERE id = ? AND revoked IS NULL",
            (now, token_id)).rowcount == 1)

    def counts(self) -> tuple[int, int, int]:
        (users,), = self._f.read("SELECT COUNT(*) FROM gov_users")
        (groups,), = self._f.read("SELECT COUNT(*) FROM gov_groups")
        (tokens,), = self._f.read("SELECT COUNT(*) FROM gov_tokens WHERE revoked IS NULL")
        return users, groups, tokens

    def close(self) -> None:
        self._f.close()
