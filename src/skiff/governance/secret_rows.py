"""The secret storage interface: the encrypted rows, and nothing that can read them.

:class:`skiff.governance.secrets.SecretStore` seals and opens values (AES-GCM,
its threat model is in that module); a backend here stores what it hands
over: per (name, version) a nonce, a ciphertext and a creation time, and a
few sealed metadata rows (the master-key canary). A backend never sees a
plaintext or the key, so moving secrets to a shared database moves only
ciphertexts bound to their names and versions.

:class:`SQLiteSecretRows` (``secrets.db``, created 0600) and
:class:`skiff.governance.secret_rows_postgres.PostgresSecretRows`;
tests/store/test_secret_rows_contract.py is the contract of both.
"""

from __future__ import annotations

import abc
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

#: Given the version a new row will have, return its (nonce, ciphertext): the
#: version is part of the associated data, so it is sealed inside the transaction.
Seal = Callable[[int], tuple[bytes, bytes]]


class SecretRows(abc.ABC):
    """Thread-safe, and safe across processes sharing the storage."""

    @abc.abstractmethod
    def meta(self, key: str, create: Callable[[], tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
        """The (nonce, ciphertext) of metadata row ``key``, stored from ``create()``
        first if there is none (atomically: two first openers agree on one row)."""

    @abc.abstractmethod
    def add(self, name: str, seal: Seal, *, must_exist: bool) -> int | None:
        """Append the next version of ``name`` (1 first) sealed by ``seal``; return it.
        With ``must_exist`` and no version yet, store nothing and return None."""

    @abc.abstractmethod
    def get(self, name: str, version: int | None) -> tuple[int, bytes, bytes] | None:
        """(version, nonce, ciphertext) at ``version``, or of the latest when None."""

    @abc.abstractmethod
    def latest(self, name: str) -> int | None: ...

    @abc.abstractmethod
    def versions(self, name: str) -> list[tuple[int, float]]:
        """(version, created) of every version, oldest first."""

    @abc.abstractmethod
    def names(self) -> list[tuple[str, int, float, float]]:
        """(name, latest version, first created, last created) by name."""

    @abc.abstractmethod
    def delete(self, name: str) -> int:
        """Delete every version of ``name``; return how many went."""

    def close(self) -> None:  # noqa: B027 - a backend without resources needs nothing
        """Release the backend's resources."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS secret_versions (
  name TEXT NOT NULL,
  version INTEGER NOT NULL,
  nonce BLOB NOT NULL,
  ciphertext BLOB NOT NULL,
  created REAL NOT NULL,
  PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS secret_meta (
  key TEXT PRIMARY KEY,
  nonce BLOB NOT NULL,
  ciphertext BLOB NOT NULL
);
"""


class SQLiteSecretRows(SecretRows):
    """One SQLite file (WAL; shared by the CLI and the server). It may hold other
    Skiff tables: only ``secret_versions`` and ``secret_meta`` are touched."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # created private: it holds ciphertexts and metadata
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)

    def _write(self, work: Callable[[sqlite3.Connection], object]) -> object:
        """One write transaction, taken up front so concurrent writers serialize."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = work(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return out

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def meta(self, key: str, create: Callable[[], tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
        def work(db: sqlite3.Connection) -> tuple[bytes, bytes]:
            row = db.execute("SELECT nonce, ciphertext FROM secret_meta WHERE key = ?",
                             (key,)).fetchone()
            if row is None:
                row = create()
                db.execute("INSERT INTO secret_meta VALUES (?, ?, ?)", (key, *row))
            return bytes(row[0]), bytes(row[1])
        return self._write(work)  # type: ignore[return-value]

    def add(self, name: str, seal: Seal, *, must_exist: bool) -> int | None:
        def work(db: sqlite3.Connection) -> int | None:
            (latest,) = db.execute("SELECT MAX(version) FROM secret_versions WHERE name = ?",
                                   (name,)).fetchone()
            if latest is None and must_exist:
                return None
            version = (latest or 0) + 1
            db.execute("INSERT INTO secret_versions VALUES (?, ?, ?, ?, ?)",
                       (name, version, *seal(version), time.time()))
            return version
        return self._write(work)  # type: ignore[return-value]

    def get(self, name: str, version: int | None) -> tuple[int, bytes, bytes] | None:
        if version is None:
            rows = self._read("SELECT version, nonce, ciphertext FROM secret_versions "
                              "WHERE name = ? ORDER BY version DESC LIMIT 1", (name,))
        else:
            rows = self._read("SELECT version, nonce, ciphertext FROM secret_versions "
                              "WHERE name = ? AND version = ?", (name, version))
        return (rows[0][0], bytes(rows[0][1]), bytes(rows[0][2])) if rows else None

    def latest(self, name: str) -> int | None:
        return self._read("SELECT MAX(version) FROM secret_versions WHERE name = ?", (name,))[0][0]

    def versions(self, name: str) -> list[tuple[int, float]]:
        return [tuple(r) for r in self._read(  # type: ignore[misc]
            "SELECT version, created FROM secret_versions WHERE name = ? ORDER BY version",
            (name,))]

    def names(self) -> list[tuple[str, int, float, float]]:
        return [tuple(r) for r in self._read(  # type: ignore[misc]
            "SELECT name, MAX(version), MIN(created), MAX(created) FROM secret_versions "
            "GROUP BY name ORDER BY name")]

    def delete(self, name: str) -> int:
        return self._write(lambda db: db.execute(  # type: ignore[return-value]
            "DELETE FROM secret_versions WHERE name = ?", (name,)).rowcount)

    def close(self) -> None:
        with self._lock:
            self._db.close()
