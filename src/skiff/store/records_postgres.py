"""The shared invocation log: records and app logs of every node in PostgreSQL.

Like the SQLite store, writes are buffered and one background thread writes
them in batches (one transaction per ~50 ms, not per request). While the
database is away the rows stay buffered, up to :data:`MAX_BUFFERED_RECORDS`
invocation records and :data:`MAX_BUFFERED_LOG_BYTES` of log lines; past
that the oldest are dropped and counted, and one line on stderr says how many
when the database is back. A request never fails for its record: the hot path
only appends to the buffer. Retention is
computed by the database, not from counters held in memory: several nodes
write the same tables, so only the database knows an app's total. Each
node's writer prunes every :data:`PRUNE_INTERVAL` seconds; two nodes pruning
at once delete the same oldest rows, which is harmless.
"""

from __future__ import annotations

import sys
import threading
import time

from skiff.store.postgres import PostgresDatabase
from skiff.store.records import (
    USAGE_KEYS,
    Invocation,
    InvocationLog,
    LogRetention,
    percentile,
    retired_name,
)

#: How often each node's writer checks retention. The cap may be exceeded by
#: what all nodes write in this time; counting every app's lines per batch
#: would cost a scan of the logs per 50 ms.
PRUNE_INTERVAL = 5.0
_BATCH_WAIT = 0.05  # gather a batch: one transaction per ~50 ms, not per request
#: Records held while the database is away: ~20 s of a busy node (1,000 requests/s)
#: in ~20 MB; an outage longer than that keeps the newest.
MAX_BUFFERED_RECORDS = 20_000
#: Log lines held meanwhile, by size (one line may be 16 KiB).
MAX_BUFFERED_LOG_BYTES = 16 * 1024 * 1024

_INVOCATION_COLUMNS = ("id, app, revision, instance, trigger, cold, init_ms, duration_ms, "
                       "queued_ms, billed_ms, memory_mb, status, error, ts, trace_id")
_LOG_COLUMNS = "app, revision, instance, request_id, stream, line, ts"


class PostgresInvocationLog(InvocationLog):
    def __init__(self, db: PostgresDatabase, *, retention: LogRetention | None = None) -> None:
        self.db = db
        self.retention = retention or LogRetention()
        self._pending_inv: list[tuple] = []
        self._pending_logs: list[tuple] = []
        self._pending_log_bytes = 0
        #: Dropped while the database was away (the buffer was full), since the last report.
        self.dropped_records = self.dropped_logs = 0
        self._failing = False
        self._buf_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # batches go in the order they were taken
        self._wake = threading.Event()
        self._stop = False
        self._stop_event = threading.Event()
        self._next_prune = 0.0
        self._writer = threading.Thread(target=self._write_loop, name="skiff-records",
                                        daemon=True)
        self._writer.start()

    # -- writes (batched) ----------------------------------------------------------
    def record(self, inv: Invocation) -> None:
        row = (inv.id, inv.app, inv.revision, inv.instance, inv.trigger, bool(inv.cold),
               inv.init_ms, inv.duration_ms, inv.queued_ms, inv.billed_ms, inv.memory_mb,
               inv.status, inv.error, inv.ts, inv.trace_id)
        with self._buf_lock:
            self._pending_inv.append(row)
        self._wake.set()

    def log(self, app: str, revision: str, instance: str, request_id: str, stream: str,
            line: str) -> None:
        # Postgres text holds no NUL; an app printing one loses only that character
        line = line.replace("\x00", "\ufffd")
        with self._buf_lock:
            self._pending_logs.append((app, revision, instance, request_id, stream, line,
                                       time.time()))
            self._pending_log_bytes += len(line)
        self._wake.set()

    def flush(self) -> None:
        with self._flush_lock:
            with self._buf_lock:
                inv, self._pending_inv = self._pending_inv, []
                logs, self._pending_logs = self._pending_logs, []
                self._pending_log_bytes = 0
            if not inv and not logs:
                return
            try:
                with self.db.transaction() as conn, conn.cursor() as cur:
                    if inv:
                        cur.executemany(f"INSERT INTO invocations ({_INVOCATION_COLUMNS}) "
                                        f"VALUES ({', '.join(['%s'] * 15)})", inv)
                    if logs:
                        cur.executemany(f"INSERT INTO logs ({_LOG_COLUMNS}) VALUES "
                                        f"({', '.join(['%s'] * 7)})", logs)
            except BaseException:
                self._keep(inv, logs)
                raise

    def _keep(self, inv: list[tuple], logs: list[tuple]) -> None:
        """Put a batch that could not be written back in front of what came since,
        within the buffer's bounds (the oldest rows go first)."""
        with self._buf_lock:
            inv = inv + self._pending_inv
            over = len(inv) - MAX_BUFFERED_RECORDS
            if over > 0:
                self.dropped_records += over
                inv = inv[over:]
            self._pending_inv = inv
            logs = logs + self._pending_logs
            size = sum(len(row[5]) for row in logs)
            cut = 0
            while size > MAX_BUFFERED_LOG_BYTES and cut < len(logs):
                size -= len(logs[cut][5])
                cut += 1
            self.dropped_logs += cut
            self._pending_logs, self._pending_log_bytes = logs[cut:], size

    def _write_loop(self) -> None:
        while not self._stop:
            self._wake.wait(1.0)
            self._wake.clear()
            time.sleep(_BATCH_WAIT)
            try:
                self.flush()
                if time.monotonic() >= self._next_prune:
                    self._next_prune = time.monotonic() + PRUNE_INTERVAL
                    self.prune_logs()
            except Exception as exc:  # the database is away: keep buffering, say so once
                if not self._failing:
                    self._failing = True
                    print(f"skiff: invocation records and logs are buffered until the "
                          f"database is back: {exc}", file=sys.stderr, flush=True)
                self._stop_event.wait(1.0)  # the database's recovery probe says when
                continue
            if self._failing:
                self._failing = False
                with self._buf_lock:
                    dropped, self.dropped_records = self.dropped_records, 0
                    dropped_logs, self.dropped_logs = self.dropped_logs, 0
                print(f"skiff: buffered invocation records and logs written; {dropped} "
                      f"records and {dropped_logs} log lines were dropped (buffer full)",
                      file=sys.stderr, flush=True)

    # -- retention -------------------------------------------------------------------
    def prune_logs(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        r = self.retention
        removed = 0
        with self.db.connection() as conn:
            removed += conn.execute("DELETE FROM logs WHERE ts < %s",
                                    (now - r.max_age_days * 86400,)).rowcount
            over = conn.execute(
                "SELECT app FROM logs GROUP BY app "
                "HAVING COUNT(*) > %s OR SUM(octet_length(line)) > %s",
                (r.max_lines_per_app, r.max_bytes_per_app)).fetchall()
            for (app,) in over:
                # the newest lines that fit both caps stay; everything older goes
                removed += conn.execute(
                    "DELETE FROM logs WHERE app = %(app)s AND seq <= ("
                    "  SELECT MAX(seq) FROM ("
                    "    SELECT seq, ROW_NUMBER() OVER w AS n, SUM(octet_length(line)) OVER w AS b"
                    "    FROM logs WHERE app = %(app)s"
                    "    WINDOW w AS (ORDER BY seq DESC ROWS UNBOUNDED PRECEDING)) t"
                    "  WHERE n > %(lines)s OR b > %(bytes)s)",
                    {"app": app, "lines": r.max_lines_per_app,
                     "bytes": r.max_bytes_per_app}).rowcount
        return removed

    # -- reads ---------------------------------------------------------------------------
    def invocations(self, app: str, limit: int = 100) -> list[dict]:
        self.flush()
        with self.db.connection() as conn, conn.cursor(row_factory=self.db.psycopg.rows.dict_row) as cur:
            return cur.execute(f"SELECT seq, {_INVOCATION_COLUMNS} FROM invocations "
                               "WHERE app = %s ORDER BY seq DESC LIMIT %s",
                               (app, limit)).fetchall()

    def logs(self, app: str, after: int = 0, limit: int = 500,
             stream: str | None = None, *, newest: bool = False, since: float | None = None,
             request_id: str | None = None) -> list[dict]:
        self.flush()
        with self.db.connection() as conn, conn.cursor(row_factory=self.db.psycopg.rows.dict_row) as cur:
            rows = cur.execute(
                f"SELECT seq, {_LOG_COLUMNS} FROM logs WHERE app = %(app)s AND seq > %(after)s "
                "AND (%(stream)s::text IS NULL OR stream = %(stream)s) "
                "AND (%(since)s::float8 IS NULL OR ts >= %(since)s) "
                "AND (%(rid)s::text IS NULL OR request_id = %(rid)s) "
                f"ORDER BY seq {'DESC' if newest else ''} LIMIT %(limit)s",
                {"app": app, "after": after, "stream": stream or None, "since": since,
                 "rid": request_id or None, "limit": limit}).fetchall()
        return rows[::-1] if newest else rows

    def usage(self, app: str, since: float, until: float, step_ms: int = 100) -> dict:
        self.flush()
        ran = f"(CEIL((billed_ms + init_ms) / {int(step_ms)}.0) * {int(step_ms)})"
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE status >= 500), "
                "COUNT(*) FILTER (WHERE cold), COALESCE(SUM(billed_ms), 0), "
                "COALESCE(SUM(init_ms), 0), COALESCE(SUM(memory_mb * billed_ms), 0), "
                f"COALESCE(SUM(memory_mb * init_ms), 0), COALESCE(SUM({ran}), 0), "
                f"COALESCE(SUM(memory_mb * {ran}), 0), 0 "
                "FROM invocations WHERE app = %s AND ts >= %s AND ts < %s",
                (app, since, until)).fetchone()
        return dict(zip(USAGE_KEYS, (int(row[0]), int(row[1]), int(row[2]),
                                     *(float(v) for v in row[3:])), strict=True))

    def stats(self, app: str, window: int = 1000) -> dict:
        self.flush()
        with self.db.connection() as conn:
            n, cold, errors, billed, init_ms = conn.execute(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE cold), COUNT(*) FILTER "
                "(WHERE status >= 500), COALESCE(SUM(billed_ms), 0), "
                "COALESCE(AVG(init_ms) FILTER (WHERE cold), 0) FROM invocations WHERE app = %s",
                (app,)).fetchone()
            recent = sorted(r[0] for r in conn.execute(
                "SELECT duration_ms FROM invocations WHERE app = %s ORDER BY seq DESC LIMIT %s",
                (app, window)))
            cold_wait = sorted(r[0] for r in conn.execute(
                "SELECT queued_ms FROM invocations WHERE app = %s AND cold "
                "ORDER BY seq DESC LIMIT %s", (app, window)))
        return {
            "requests": n, "cold_starts": cold, "errors": errors, "billed_ms": int(billed),
            "avg_init_ms": round(float(init_ms), 2),
            "p50_ms": percentile(recent, 50), "p95_ms": percentile(recent, 95),
            "p99_ms": percentile(recent, 99),
            "cold_start_added_p95_ms": percentile(cold_wait, 95),
        }

    def retire_records(self, app: str, when: float | None = None) -> str:
        retired = retired_name(app, time.time() if when is None else when)
        self.flush()
        with self.db.transaction() as conn:
            conn.execute("UPDATE invocations SET app = %s WHERE app = %s", (retired, app))
            conn.execute("UPDATE logs SET app = %s WHERE app = %s", (retired, app))
        return retired

    def close(self) -> None:
        self._stop = True
        self._stop_event.set()
        self._wake.set()
        self._writer.join(2)
        try:
            self.flush()
        except Exception as exc:  # stopping while the database is away: say what is lost
            print(f"skiff: {len(self._pending_inv)} invocation records and "
                  f"{len(self._pending_logs)} log lines not written: {exc}", file=sys.stderr,
                  flush=True)

