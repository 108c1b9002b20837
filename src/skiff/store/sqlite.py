"""The embedded default store: one SQLite file (WAL) for the registry of apps
and revisions, invocation records and app logs.

Records and logs are written off the request path by one background thread in
batches; readers call ``flush()`` first so what they read is complete. The same
thread prunes logs (:class:`LogRetention`): by age, and per app by line count
and by bytes, oldest first, in small transactions, so an app printing at the
rate limit keeps at most its cap on disk and never evicts another app's lines.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from skiff.store.records import (
    USAGE_KEYS,
    Invocation,
    InvocationLog,
    LogRetention,
    percentile,
    retired_name,
)
from skiff.store.registry import Registry, RevisionRow
from skiff.store.uids import FIRST_APP_UID, UidRegistry

__all__ = ["Invocation", "LogRetention", "RevisionRow", "Store", "connect"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (
  name TEXT PRIMARY KEY,
  revision TEXT NOT NULL,
  created REAL NOT NULL,
  updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS revisions (
  app TEXT NOT NULL,
  revision TEXT NOT NULL,
  manifest TEXT NOT NULL,
  code_dir TEXT NOT NULL,
  env_key TEXT NOT NULL,
  created REAL NOT NULL,
  PRIMARY KEY (app, revision)
);
CREATE TABLE IF NOT EXISTS invocations (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL,
  app TEXT NOT NULL,
  revision TEXT NOT NULL,
  instance TEXT NOT NULL,
  trigger TEXT NOT NULL,
  cold INTEGER NOT NULL,
  init_ms REAL NOT NULL,
  duration_ms REAL NOT NULL,
  queued_ms REAL NOT NULL,
  billed_ms INTEGER NOT NULL,
  memory_mb INTEGER NOT NULL,
  status INTEGER NOT NULL,
  error TEXT,
  ts REAL NOT NULL,
  trace_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS invocations_app ON invocations (app, seq);
CREATE INDEX IF NOT EXISTS invocations_app_ts ON invocations (app, ts);  -- usage()
CREATE TABLE IF NOT EXISTS logs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  app TEXT NOT NULL,
  revision TEXT NOT NULL,
  instance TEXT NOT NULL,
  request_id TEXT NOT NULL,
  stream TEXT NOT NULL,
  line TEXT NOT NULL,
  ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_app ON logs (app, seq);
CREATE TABLE IF NOT EXISTS route_grants (
  app TEXT NOT NULL,
  host TEXT NOT NULL,
  path TEXT NOT NULL,
  created REAL NOT NULL,
  PRIMARY KEY (app, host, path)
);
CREATE TABLE IF NOT EXISTS code_bundles (
  app TEXT NOT NULL,
  revision TEXT NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (app, revision)
);
CREATE TABLE IF NOT EXISTS app_uids (
  app TEXT PRIMARY KEY,
  uid INTEGER NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS released_uids (
  uid INTEGER PRIMARY KEY  -- a deleted app's: never handed out again
);
"""

# Rows deleted per pruning transaction: the store's lock (which request-path
# readers and the batch writer share) is held for one small DELETE at a time.
PRUNE_BATCH = 2000
AGE_CHECK_SECONDS = 60.0  # age pruning runs this often; caps are checked after every batch


def connect(path: str | Path, *, durable: bool = False, schema: str = "",
            exclusive: bool = False) -> sqlite3.Connection:
    """How every Skiff SQLite file is opened: WAL, autocommit (explicit BEGIN where a
    transaction is meant), shared across threads behind the caller's lock.
    ``durable`` fsyncs every commit (synchronous=FULL): what was acknowledged
    survives power loss; NORMAL survives a crash of the process. ``exclusive``
    is for files only this connection opens (the platform's bus, KV and event
    state): it saves a lock round trip per transaction (~40 fcntl calls per
    async message, profiled)."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        if exclusive:  # one connection owns the file: no file locking per transaction
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        if schema:
            conn.executescript(schema)
    except BaseException:
        conn.close()
        raise
    return conn


class Store(Registry, InvocationLog):
    def __init__(self, path: Path, *, retention: LogRetention | None = None,
                 uids: UidRegistry | None = None) -> None:
        """``uids``: the host-wide uid registry (when running as root); this home's
        recorded uids are checked against it first, and a conflict (UidConflict)
        means the home does not open."""
        self.path = path
        self.retention = retention or LogRetention()
        self._db = connect(path, schema=_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(invocations)")}
        if "trace_id" not in columns:  # a file of schema 1 (migration 0002 names the change)
            self._db.execute("ALTER TABLE invocations ADD COLUMN trace_id TEXT NOT NULL "
                             "DEFAULT ''")
        self._db.row_factory = sqlite3.Row
        self._uids = uids
        if uids is not None:
            try:
                uids.claim({r["app"]: r["uid"] for r in self._db.execute("SELECT * FROM app_uids")})
            except BaseException:
                self._db.close()
                uids.close()
                raise
        self._lock = threading.Lock()
        # lines and bytes each app has in `logs`, kept current by flush and prune, so
        # the caps cost no count(*) per batch. Counted from the file by the writer
        # thread, not here: 100,000 lines take ~200 ms to measure (and until an app is
        # measured its count is low, so nothing is pruned too early)
        self._log_sizes: dict[str, list[int]] = {}
        self._sizes_measured = False
        self._next_age_check = 0.0
        self._pending_inv: list[tuple] = []
        self._pending_logs: list[tuple] = []
        self._buf_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._writer = threading.Thread(target=self._write_loop, name="skiff-store", daemon=True)
        self._writer.start()

    # -- registry -------------------------------------------------------------
    def put_revision(self, row: RevisionRow) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO revisions VALUES (?, ?, ?, ?, ?, ?)",
                (row.app, row.revision, json.dumps(row.manifest, sort_keys=True), row.code_dir,
                 row.env_key, row.created))

    def set_current(self, app: str, revision: str) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO apps VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "revision = excluded.revision, updated = excluded.updated",
                (app, revision, now, now))

    def current(self, app: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT revision FROM apps WHERE name = ?", (app,)).fetchone()
        return row["revision"] if row else None

    def apps(self) -> list[tuple[str, str]]:
        with self._lock:
            rows = self._db.execute("SELECT name, revision FROM apps ORDER BY name").fetchall()
        return [(r["name"], r["revision"]) for r in rows]

    def revision(self, app: str, revision: str) -> RevisionRow | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM revisions WHERE app = ? AND revision = ?",
                                   (app, revision)).fetchone()
        return _revision(row) if row else None

    def revisions(self, app: str) -> list[RevisionRow]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM revisions WHERE app = ? ORDER BY created",
                                    (app,)).fetchall()
        return [_revision(r) for r in rows]

    def uid_for(self, app: str) -> int:
        """The app's own uid, allocated once and kept (files it writes stay its own):
        from the host-wide registry when there is one, never one released before."""
        with self._lock:
            row = self._db.execute("SELECT uid FROM app_uids WHERE app = ?", (app,)).fetchone()
            if row:
                return row["uid"]
            mine = [r[0] for r in self._db.execute(
                "SELECT uid FROM app_uids UNION SELECT uid FROM released_uids")]
            if self._uids is not None:
                uid = self._uids.allocate(app, avoid=mine)
            else:
                uid = max([FIRST_APP_UID - 1, *mine]) + 1
            self._db.execute("INSERT INTO app_uids VALUES (?, ?)", (app, uid))
            return uid

    def release_uid(self, app: str) -> None:
        """The app is deleted: its uid is retired here and in the registry, so an
        app deployed later under the same name gets a fresh one."""
        with self._lock:
            row = self._db.execute("SELECT uid FROM app_uids WHERE app = ?", (app,)).fetchone()
            if row is None:
                return
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR IGNORE INTO released_uids VALUES (?)", (row["uid"],))
            self._db.execute("DELETE FROM app_uids WHERE app = ?", (app,))
            self._db.execute("COMMIT")
            if self._uids is not None:
                self._uids.release(app)

    def delete_app(self, app: str) -> None:
        """Forget the app: its registry row, its revisions and the routes granted to
        it, in one transaction. Its invocation records and logs stay (see
        :meth:`retire_records`)."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM apps WHERE name = ?", (app,))
            self._db.execute("DELETE FROM revisions WHERE app = ?", (app,))
            self._db.execute("DELETE FROM route_grants WHERE app = ?", (app,))
            self._db.execute("DELETE FROM code_bundles WHERE app = ?", (app,))
            self._db.execute("COMMIT")

    def retire_records(self, app: str, when: float | None = None) -> str:
        """Keep a deleted app's invocation records and logs for audit under a name no
        app can have (``<app>@deleted-<unix time>``), so a later app of the same name
        starts with no history; return that name. One UPDATE per table: a delete is
        rare, and its caller runs this off the event loop."""
        retired = retired_name(app, time.time() if when is None else when)
        self.flush()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("UPDATE invocations SET app = ? WHERE app = ?", (retired, app))
            self._db.execute("UPDATE logs SET app = ? WHERE app = ?", (retired, app))
            self._db.execute("COMMIT")
            size = self._log_sizes.pop(app, None)
            if size is not None:
                self._log_sizes[retired] = size
        return retired

    def put_bundle(self, app: str, revision: str, data: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO code_bundles VALUES (?, ?, ?)",
                             (app, revision, data))

    def bundle(self, app: str, revision: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM code_bundles WHERE app = ? AND revision = ?",
                                   (app, revision)).fetchone()
        return None if row is None else bytes(row[0])

    def has_bundle(self, app: str, revision: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM code_bundles WHERE app = ? AND revision = ?",
                                    (app, revision)).fetchone() is not None

    # -- route grants (the operator's exceptions to route ownership) -----------------
    def grant_route(self, app: str, host: str | None, path: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO route_grants VALUES (?, ?, ?, ?)",
                             (app, host or "", path, time.time()))

    def revoke_route(self, app: str, host: str | None, path: str) -> bool:
        with self._lock:
            return self._db.execute(
                "DELETE FROM route_grants WHERE app = ? AND host = ? AND path = ?",
                (app, host or "", path)).rowcount == 1

    def route_grants(self, app: str | None = None) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM route_grants WHERE ?1 IS NULL OR app = ?1 ORDER BY app, host, path",
                (app,)).fetchall()
        return [{"app": r["app"], "host": r["host"] or None, "path": r["path"],
                 "created": r["created"]} for r in rows]

    # -- records (batched) ------------------------------------------------------
    def record(self, inv: Invocation) -> None:
        row = (inv.id, inv.app, inv.revision, inv.instance, inv.trigger, int(inv.cold),
               inv.init_ms, inv.duration_ms, inv.queued_ms, inv.billed_ms, inv.memory_mb,
               inv.status, inv.error, inv.ts, inv.trace_id)
        with self._buf_lock:
            self._pending_inv.append(row)
        self._wake.set()

    def log(self, app: str, revision: str, instance: str, request_id: str, stream: str,
            line: str) -> None:
        with self._buf_lock:
            self._pending_logs.append((app, revision, instance, request_id, stream, line,
                                       time.time()))
        self._wake.set()

    def flush(self) -> None:
        with self._buf_lock:
            inv, self._pending_inv = self._pending_inv, []
            logs, self._pending_logs = self._pending_logs, []
        if not inv and not logs:
            return
        with self._lock:
            self._db.execute("BEGIN")
            if inv:
                self._db.executemany(
                    "INSERT INTO invocations (id, app, revision, instance, trigger, cold, init_ms,"
                    " duration_ms, queued_ms, billed_ms, memory_mb, status, error, ts, trace_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", inv)
            if logs:
                self._db.executemany(
                    "INSERT INTO logs (app, revision, instance, request_id, stream, line, ts)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)", logs)
            self._db.execute("COMMIT")
            for row in logs:
                size = self._log_sizes.setdefault(row[0], [0, 0])
                size[0] += 1
                size[1] += len(row[5].encode("utf-8", "surrogatepass"))

    # -- log retention (the writer thread's job, never a request's) -----------------
    def prune_logs(self, now: float | None = None) -> int:
        """Delete what retention does not keep; return how many lines went."""
        now = time.time() if now is None else now
        removed = 0
        if now >= self._next_age_check:
            self._next_age_check = now + AGE_CHECK_SECONDS
            cutoff = now - self.retention.max_age_days * 86400
            while True:
                with self._lock:
                    oldest = self._db.execute("SELECT ts FROM logs ORDER BY seq LIMIT 1").fetchone()
                    if oldest is None or oldest[0] >= cutoff:
                        break
                    # seq follows ts: the old lines are the first ones
                    n = self._delete_logs(
                        "SELECT seq FROM logs ORDER BY seq LIMIT ?", (PRUNE_BATCH,), cutoff)
                removed += n
                if n == 0:
                    break
        keep_lines = self.retention.max_lines_per_app
        keep_bytes = self.retention.max_bytes_per_app
        with self._lock:
            over = [app for app, (lines, size) in self._log_sizes.items()
                    if lines > keep_lines or size > keep_bytes]
        for app in over:
            while True:
                with self._lock:
                    lines, size = self._log_sizes.get(app, (0, 0))
                    if lines <= keep_lines and size <= keep_bytes:
                        break
                    # over by lines: exactly the excess; over by bytes: the excess in
                    # average lines, repeated until under
                    batch = max(lines - keep_lines,
                                -(-(size - keep_bytes) * lines // max(size, 1)), 1)
                    batch = min(PRUNE_BATCH, batch)
                    n = self._delete_logs(
                        "SELECT seq FROM logs WHERE app = ? ORDER BY seq LIMIT ?", (app, batch))
                removed += n
                if n == 0:
                    break
        return removed

    def _measure_log_sizes(self) -> None:
        """Count each app's lines and bytes in the file, one app per lock hold; a
        measure is exact at its moment and flush adds what comes after it."""
        with self._lock:
            apps = [r[0] for r in self._db.execute("SELECT DISTINCT app FROM logs")]
        for app in apps:
            with self._lock:
                lines, size = self._db.execute(
                    "SELECT count(*), coalesce(sum(length(CAST(line AS BLOB))), 0) FROM logs "
                    "WHERE app = ?", (app,)).fetchone()
                self._log_sizes[app] = [lines, size]
        self._sizes_measured = True

    def _delete_logs(self, select: str, args: tuple, before: float | None = None) -> int:
        """Delete the rows ``select`` picks (older than ``before`` if given), keeping
        the per-app sizes current. The caller holds the lock."""
        sql = f"DELETE FROM logs WHERE seq IN ({select})"
        if before is not None:
            sql += " AND ts < ?"
            args = (*args, before)
        rows = self._db.execute(sql + " RETURNING app, length(CAST(line AS BLOB))",
                                args).fetchall()
        for app, size in rows:
            entry = self._log_sizes.get(app)
            if entry is not None:
                entry[0] -= 1
                entry[1] -= size
                if entry[0] <= 0:
                    del self._log_sizes[app]
        return len(rows)

    def _write_loop(self) -> None:
        while not self._stop:
            self._wake.wait(1.0)
            self._wake.clear()
            time.sleep(0.05)  # gather a batch: one transaction per ~50 ms, not per request
            try:
                self.flush()
            except sqlite3.Error as exc:
                print(f"skiff: could not write invocation records: {exc}")
            try:
                if not self._sizes_measured:
                    self._measure_log_sizes()
                self.prune_logs()
            except sqlite3.Error as exc:
                print(f"skiff: could not prune logs: {exc}")

    def invocations(self, app: str, limit: int = 100) -> list[dict]:
        self.flush()
        with self._lock:
            rows = self._db.execute("SELECT * FROM invocations WHERE app = ? ORDER BY seq DESC "
                                    "LIMIT ?", (app, limit)).fetchall()
        return [dict(r) | {"cold": bool(r["cold"])} for r in rows]

    def logs(self, app: str, after: int = 0, limit: int = 500,
             stream: str | None = None, *, newest: bool = False, since: float | None = None,
             request_id: str | None = None) -> list[dict]:
        self.flush()
        where, args = "app = ? AND seq > ?", [app, after]
        for clause, arg in (("stream = ?", stream), ("ts >= ?", since),
                            ("request_id = ?", request_id)):
            if arg is not None and arg != "":
                where += f" AND {clause}"
                args.append(arg)
        order = "DESC" if newest else ""
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM logs WHERE {where} ORDER BY seq {order} "
                                    "LIMIT ?", (*args, limit)).fetchall()
        out = [dict(r) for r in rows]
        return out[::-1] if newest else out

    def stats(self, app: str, window: int = 1000) -> dict:
        """Counts over all time; latency percentiles over the last ``window`` requests."""
        self.flush()
        with self._lock:
            total = self._db.execute(
                "SELECT count(*) AS n, coalesce(sum(cold), 0) AS cold, "
                "coalesce(sum(status >= 500), 0) AS errors, coalesce(sum(billed_ms), 0) AS billed,"
                " coalesce(avg(CASE WHEN cold THEN init_ms END), 0) AS init_ms "
                "FROM invocations WHERE app = ?", (app,)).fetchone()
            recent = [r[0] for r in self._db.execute(
                "SELECT duration_ms FROM invocations WHERE app = ? ORDER BY seq DESC LIMIT ?",
                (app, window))]
            # what a cold start added: the wait for the new instance, before the handler ran
            cold_wait = [r[0] for r in self._db.execute(
                "SELECT queued_ms FROM invocations WHERE app = ? AND cold ORDER BY seq DESC "
                "LIMIT ?", (app, window))]
        recent.sort()
        cold_wait.sort()
        return {
            "requests": total["n"], "cold_starts": total["cold"], "errors": total["errors"],
            "billed_ms": total["billed"], "avg_init_ms": round(total["init_ms"], 2),
            "p50_ms": percentile(recent, 50), "p95_ms": percentile(recent, 95), "p99_ms": percentile(recent, 99),
            "cold_start_added_p95_ms": percentile(cold_wait, 95),
        }

    def usage(self, app: str, since: float, until: float, step_ms: int = 100) -> dict:
        self.flush()
        # ceil(x / step) as floor((x + step - tiny) / step): SQLite's math functions are
        # optional at build time; x >= 1 always (billed_ms is)
        ran = f"(CAST((billed_ms + init_ms + {step_ms} - 0.000001) / {step_ms} AS INTEGER) * {step_ms})"
        with self._lock:
            row = self._db.execute(
                "SELECT count(*), coalesce(sum(status >= 500), 0), coalesce(sum(cold), 0), "
                "coalesce(sum(billed_ms), 0), coalesce(sum(init_ms), 0), "
                "coalesce(sum(memory_mb * billed_ms), 0), coalesce(sum(memory_mb * init_ms), 0), "
                f"coalesce(sum({ran}), 0), coalesce(sum(memory_mb * {ran}), 0), 0 "
                "FROM invocations WHERE app = ? AND ts >= ? AND ts < ?",
                (app, since, until)).fetchone()
        return dict(zip(USAGE_KEYS, (int(row[0]), int(row[1]), int(row[2]),
                                     *(float(v) for v in row[3:])), strict=True))

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._writer.join(2)
        self.flush()
        self._db.close()
        if self._uids is not None:
            self._uids.close()


def _revision(row: sqlite3.Row) -> RevisionRow:
    return RevisionRow(app=row["app"], revision=row["revision"], manifest=json.loads(row["manifest"]),
                       code_dir=row["code_dir"], env_key=row["env_key"], created=row["created"])
