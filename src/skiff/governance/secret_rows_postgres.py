"""The shared secret storage: ciphertext rows in PostgreSQL (see secret_rows.py).

Adding a version locks the secret's name with a transaction-scoped advisory
lock first, so two nodes rotating one secret get versions n+1 and n+2 instead
of one failing on the primary key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from skiff.governance.secret_rows import Seal, SecretRows

#: The first key of these advisory locks ("sec"); the second is a hash of the name.
_LOCK_CLASS = 0x736563


class PostgresSecretRows(SecretRows):
    def __init__(self, db: Any) -> None:
        """``db``: a :class:`skiff.store.postgres.PostgresDatabase` (not imported:
        governance sits beside store, not above it)."""
        self.db = db

    def meta(self, key: str, create: Callable[[], tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
        with self.db.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, key))
            row = conn.execute("SELECT nonce, ciphertext FROM secret_meta WHERE key = %s",
                               (key,)).fetchone()
            if row is None:
                row = create()
                conn.execute("INSERT INTO secret_meta VALUES (%s, %s, %s)", (key, *row))
        return bytes(row[0]), bytes(row[1])

    def add(self, name: str, seal: Seal, *, must_exist: bool) -> int | None:
        with self.db.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, name))
            (latest,) = conn.execute("SELECT MAX(version) FROM secret_versions WHERE name = %s",
                                     (name,)).fetchone()
            if latest is None and must_exist:
                return None
            version = (latest or 0) + 1
            conn.execute("INSERT INTO secret_versions VALUES (%s, %s, %s, %s, %s)",
                         (name, version, *seal(version), time.time()))
        return version

    def get(self, name: str, version: int | None) -> tuple[int, bytes, bytes] | None:
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT version, nonce, ciphertext FROM secret_versions WHERE name = %(n)s "
                "AND (%(v)s::int IS NULL OR version = %(v)s) ORDER BY version DESC LIMIT 1",
                {"n": name, "v": version}).fetchone()
        return (row[0], bytes(row[1]), bytes(row[2])) if row else None

    def latest(self, name: str) -> int | None:
        with self.db.connection() as conn:
            return conn.execute("SELECT MAX(version) FROM secret_versions WHERE name = %s",
                                (name,)).fetchone()[0]

    def versions(self, name: str) -> list[tuple[int, float]]:
        with self.db.connection() as conn:
            return [tuple(r) for r in conn.execute(
                "SELECT version, created FROM secret_versions WHERE name = %s ORDER BY version",
                (name,)).fetchall()]

    def names(self) -> list[tuple[str, int, float, float]]:
        with self.db.connection() as conn:
            return [tuple(r) for r in conn.execute(
                "SELECT name, MAX(version), MIN(created), MAX(created) FROM secret_versions "
                "GROUP BY name ORDER BY name").fetchall()]

    def delete(self, name: str) -> int:
        with self.db.connection() as conn:
            return conn.execute("DELETE FROM secret_versions WHERE name = %s", (name,)).rowcount
