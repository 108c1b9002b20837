"""The embedded KV backend: one SQLite table, keyed by (namespace, key).

Read-modify-write operations run in ``BEGIN IMMEDIATE`` transactions, so they
are atomic across threads and across processes sharing the file. Keys sort by
SQLite's BINARY collation, i.e. UTF-8 bytes, which is code point order, the
same order :class:`~skiff.store.kv.MemoryKV` uses.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from skiff.store.kv import KV, MAX_VALUE_BYTES, Clock, StoredItem
from skiff.store.sqlite import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv_items (
  ns TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  version INTEGER NOT NULL,
  expires_at REAL,
  PRIMARY KEY (ns, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_items_expiry ON kv_items (expires_at)
  WHERE expires_at IS NOT NULL;
"""


class SQLiteKV(KV):
    def __init__(self, path: str | Path, *, durable: bool = True, clock: Clock = time.time,
                 max_value_bytes: int = MAX_VALUE_BYTES, exclusive: bool = False) -> None:
        super().__init__(clock=clock, max_value_bytes=max_value_bytes)
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = connect(self.path, durable=durable, schema=_SCHEMA, exclusive=exclusive)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, ns: str, key: str) -> StoredItem | None:
        with self._lock:
            row = self._db.execute("SELECT key, value, version, expires_at FROM kv_items "
                                   "WHERE ns = ? AND key = ?", (ns, key)).fetchone()
        return None if row is None else StoredItem(*row)

    def _write(self, ns: str, item: StoredItem) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kv_items VALUES (?, ?, ?, ?, ?)",
                             (ns, item.key, item.data, item.version, item.expires_at))

    def _remove(self, ns: str, key: str, version: int | None) -> bool:
        with self._lock:
            if version is None:
                cur = self._db.execute("DELETE FROM kv_items WHERE ns = ? AND key = ?", (ns, key))
            else:
                cur = self._db.execute("DELETE FROM kv_items WHERE ns = ? AND key = ? AND "
                                       "version = ?", (ns, key, version))
        return cur.rowcount == 1

    def _scan(self, ns: str, start: str, end: str | None, after: str | None,
              limit: int) -> list[StoredItem]:
        sql = "SELECT key, value, version, expires_at FROM kv_items WHERE ns = ? AND key >= ?"
        args: list[object] = [ns, start]
        if end is not None:
            sql += " AND key < ?"
            args.append(end)
        if after is not None:
            sql += " AND key > ?"
            args.append(after)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY key LIMIT ?", (*args, limit)).fetchall()
        return [StoredItem(*row) for row in rows]

    def _remove_expired(self, ns: str | None, now: float) -> int:
        with self._lock:
            if ns is None:
                cur = self._db.execute("DELETE FROM kv_items WHERE expires_at <= ?", (now,))
            else:
                cur = self._db.execute("DELETE FROM kv_items WHERE expires_at <= ? AND ns = ?",
                                       (now, ns))
        return cur.rowcount

    def _clear(self, ns: str) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM kv_items WHERE ns = ?", (ns,)).rowcount
