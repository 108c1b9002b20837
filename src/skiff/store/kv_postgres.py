"""The shared KV backend: one PostgreSQL table, keyed by (namespace, key).

The base class runs each read-modify-write (conditional put, incr, delete)
inside :meth:`PostgresKV._atomic`. The key a transaction reads first is
locked with a transaction-scoped advisory lock before the read, so two nodes
updating one key serialize, including the first write of a key that has no
row yet to lock with ``FOR UPDATE`` (two ``if_absent`` puts: one wins).
Keys are ``COLLATE "C"``: code point order, as the contract says.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from skiff.store.kv import KV, MAX_VALUE_BYTES, Clock, StoredItem
from skiff.store.postgres import PostgresDatabase

#: The first key of KV's advisory locks (the second is a hash of ns and key),
#: so they cannot collide with another family's ("kv").
_LOCK_CLASS = 0x6B76


class PostgresKV(KV):
    def __init__(self, db: PostgresDatabase, *, clock: Clock = time.time,
                 max_value_bytes: int = MAX_VALUE_BYTES) -> None:
        super().__init__(clock=clock, max_value_bytes=max_value_bytes)
        self.db = db
        self._local = threading.local()

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        with self.db.transaction() as conn:
            self._local.conn = conn
            self._local.locked = set()
            try:
                yield
            finally:
                self._local.conn = None

    @contextlib.contextmanager
    def _conn(self) -> Iterator[Any]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
        else:
            with self.db.connection() as conn:
                yield conn

    def _read(self, ns: str, key: str) -> StoredItem | None:
        with self._conn() as conn:
            if getattr(self._local, "conn", None) is conn and (ns, key) not in self._local.locked:
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                             (_LOCK_CLASS, f"{ns}\x1f{key}"))
                self._local.locked.add((ns, key))
            row = conn.execute("SELECT key, value, version, expires_at FROM kv_items "
                               "WHERE ns = %s AND key = %s", (ns, key)).fetchone()
        return None if row is None else StoredItem(*row)

    def _write(self, ns: str, item: StoredItem) -> None:
        with self._conn() as conn:
            conn.execute("INSERT INTO kv_items VALUES (%s, %s, %s, %s, %s) "
                         "ON CONFLICT (ns, key) DO UPDATE SET value = EXCLUDED.value, "
                         "version = EXCLUDED.version, expires_at = EXCLUDED.expires_at",
                         (ns, item.key, item.data, item.version, item.expires_at))

    def _remove(self, ns: str, key: str, version: int | None) -> bool:
        with self._conn() as conn:
            if version is None:
                cur = conn.execute("DELETE FROM kv_items WHERE ns = %s AND key = %s", (ns, key))
            else:
                cur = conn.execute("DELETE FROM kv_items WHERE ns = %s AND key = %s AND "
                                   "version = %s", (ns, key, version))
        return cur.rowcount == 1

    def _scan(self, ns: str, start: str, end: str | None, after: str | None,
              limit: int) -> list[StoredItem]:
        sql = "SELECT key, value, version, expires_at FROM kv_items WHERE ns = %s AND key >= %s"
        args: list[object] = [ns, start]
        if end is not None:
            sql += " AND key < %s"
            args.append(end)
        if after is not None:
            sql += " AND key > %s"
            args.append(after)
        with self._conn() as conn:
            rows = conn.execute(sql + " ORDER BY key LIMIT %s", (*args, limit)).fetchall()
        return [StoredItem(*row) for row in rows]

    def _remove_expired(self, ns: str | None, now: float) -> int:
        with self._conn() as conn:
            if ns is None:
                cur = conn.execute("DELETE FROM kv_items WHERE expires_at <= %s", (now,))
            else:
                cur = conn.execute("DELETE FROM kv_items WHERE expires_at <= %s AND ns = %s",
                                   (now, ns))
        return cur.rowcount

    def _clear(self, ns: str) -> int:
        with self._conn() as conn:
            return conn.execute("DELETE FROM kv_items WHERE ns = %s", (ns,)).rowcount
