"""Schema versions: the numbered migrations of the shared database.

The database records the migrations applied to it in ``skiff_schema``; the
code knows :data:`MIGRATIONS`. A node starts only when both agree
(:func:`check`): a database that is behind is brought forward by
``skiff migrate`` (run once, by an operator, while nodes of the old version
are stopped), and a database ahead of the node means the node runs old code.
Neither case is guessed around, because a node that writes rows of another
shape corrupts what the others read.

Migrations only ever append. Each is one transaction; concurrent ``skiff
migrate`` runs serialize on an advisory lock (Postgres) or the write lock
(SQLite). On SQLite the backends still create their own tables (one node owns
the file), so its migrations carry only what changes existing tables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from skiff.errors import SchemaMismatch
from skiff.store.postgres import mask_url


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    postgres: str
    sqlite: str = ""


_BUS = """
CREATE TABLE bus_messages (
  seq BIGSERIAL PRIMARY KEY,
  queue TEXT NOT NULL,
  message_id TEXT NOT NULL,
  body BYTEA NOT NULL,
  attributes TEXT NOT NULL,
  sent_at DOUBLE PRECISION NOT NULL,
  visible_at DOUBLE PRECISION NOT NULL,
  receive_count INTEGER NOT NULL DEFAULT 0,
  first_received_at DOUBLE PRECISION,
  receipt TEXT,
  source_queue TEXT,
  UNIQUE (queue, message_id)
);
CREATE INDEX bus_messages_ready ON bus_messages (queue, visible_at, seq);
CREATE TABLE bus_queues (
  name TEXT PRIMARY KEY,
  dead_letter_queue TEXT,
  max_receive_count INTEGER
);
"""

# COLLATE "C": keys sort by code point, as the KV contract says (and SQLite does).
_KV = """
CREATE TABLE kv_items (
  ns TEXT COLLATE "C" NOT NULL,
  key TEXT COLLATE "C" NOT NULL,
  value TEXT NOT NULL,
  version BIGINT NOT NULL,
  expires_at DOUBLE PRECISION,
  PRIMARY KEY (ns, key)
);
CREATE INDEX kv_items_expiry ON kv_items (expires_at) WHERE expires_at IS NOT NULL;
"""

_REGISTRY = """
CREATE TABLE apps (
  name TEXT PRIMARY KEY,
  revision TEXT NOT NULL,
  created DOUBLE PRECISION NOT NULL,
  updated DOUBLE PRECISION NOT NULL
);
CREATE TABLE revisions (
  app TEXT NOT NULL,
  revision TEXT NOT NULL,
  manifest TEXT NOT NULL,
  code_dir TEXT NOT NULL,
  env_key TEXT NOT NULL,
  created DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (app, revision)
);
CREATE TABLE code_bundles (
  app TEXT NOT NULL,
  revision TEXT NOT NULL,
  data BYTEA NOT NULL,
  PRIMARY KEY (app, revision)
);
CREATE TABLE route_grants (
  app TEXT NOT NULL,
  host TEXT NOT NULL,
  path TEXT NOT NULL,
  created DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (app, host, path)
);
CREATE TABLE app_uids (
  app TEXT PRIMARY KEY,
  uid INTEGER NOT NULL UNIQUE
);
CREATE TABLE released_uids (
  uid INTEGER PRIMARY KEY
);
"""

_RECORDS = """
CREATE TABLE invocations (
  seq BIGSERIAL PRIMARY KEY,
  id TEXT NOT NULL,
  app TEXT NOT NULL,
  revision TEXT NOT NULL,
  instance TEXT NOT NULL,
  trigger TEXT NOT NULL,
  cold BOOLEAN NOT NULL,
  init_ms DOUBLE PRECISION NOT NULL,
  duration_ms DOUBLE PRECISION NOT NULL,
  queued_ms DOUBLE PRECISION NOT NULL,
  billed_ms BIGINT NOT NULL,
  memory_mb INTEGER NOT NULL,
  status INTEGER NOT NULL,
  error TEXT,
  ts DOUBLE PRECISION NOT NULL
);
CREATE INDEX invocations_app ON invocations (app, seq);
CREATE TABLE logs (
  seq BIGSERIAL PRIMARY KEY,
  app TEXT NOT NULL,
  revision TEXT NOT NULL,
  instance TEXT NOT NULL,
  request_id TEXT NOT NULL,
  stream TEXT NOT NULL,
  line TEXT NOT NULL,
  ts DOUBLE PRECISION NOT NULL
);
CREATE INDEX logs_app ON logs (app, seq);
"""

_TRIGGERS = """
CREATE TABLE async_invocations (
  id TEXT PRIMARY KEY,
  app TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  created DOUBLE PRECISION NOT NULL,
  updated DOUBLE PRECISION NOT NULL,
  status_code INTEGER,
  result BYTEA,
  error TEXT
);
CREATE INDEX async_invocations_app ON async_invocations (app);
CREATE TABLE schedule_checkpoints (
  app TEXT NOT NULL,
  trigger TEXT NOT NULL,
  last_fire DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (app, trigger)
);
"""

_SECRETS = """
CREATE TABLE secret_versions (
  name TEXT NOT NULL,
  version INTEGER NOT NULL,
  nonce BYTEA NOT NULL,
  ciphertext BYTEA NOT NULL,
  created DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (name, version)
);
CREATE TABLE secret_meta (
  key TEXT PRIMARY KEY,
  nonce BYTEA NOT NULL,
  ciphertext BYTEA NOT NULL
);
"""

# The event plane's state moves to the shared database: the IdempotencyInProgress wait
# counts (events.db had them), and an index of the pending rows the per-app async bound
# counts at every accept.
_ASYNC_WAITS = """
CREATE TABLE async_waits (
  id TEXT PRIMARY KEY,
  waits INTEGER NOT NULL
);
CREATE INDEX async_invocations_pending ON async_invocations (app)
  WHERE status IN ('queued', 'retrying');
"""

# identities and the audit trail (skiff.governance); "user" is reserved in Postgres
_GOVERNANCE = """
CREATE TABLE gov_users (name TEXT PRIMARY KEY, created DOUBLE PRECISION NOT NULL);
CREATE TABLE gov_groups (name TEXT PRIMARY KEY, created DOUBLE PRECISION NOT NULL);
CREATE TABLE gov_members (
  username TEXT NOT NULL, grp TEXT NOT NULL, PRIMARY KEY (username, grp));
CREATE TABLE gov_tokens (
  id TEXT PRIMARY KEY,
  digest TEXT NOT NULL UNIQUE,
  username TEXT NOT NULL,
  role TEXT NOT NULL,
  created DOUBLE PRECISION NOT NULL,
  expires DOUBLE PRECISION,
  revoked DOUBLE PRECISION
);
CREATE TABLE gov_audit (
  seq BIGSERIAL PRIMARY KEY,
  ts DOUBLE PRECISION NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  app TEXT,
  decision TEXT NOT NULL,
  reason TEXT NOT NULL,
  details TEXT NOT NULL
);
CREATE INDEX gov_audit_app ON gov_audit (app, seq);
"""

# the workflow history (skiff.store.workflow_history): machines, executions, events
_WORKFLOWS = """
CREATE TABLE sfn_machines (
  name TEXT NOT NULL,
  revision TEXT NOT NULL,
  definition TEXT NOT NULL,
  type TEXT NOT NULL,
  created DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (name, revision)
);
CREATE TABLE sfn_current (name TEXT PRIMARY KEY, revision TEXT NOT NULL);
CREATE TABLE sfn_executions (
  arn TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  machine TEXT NOT NULL,
  revision TEXT NOT NULL,
  status TEXT NOT NULL,
  input TEXT,
  start DOUBLE PRECISION NOT NULL,
  output TEXT,
  error TEXT,
  cause TEXT,
  stop DOUBLE PRECISION
);
CREATE INDEX sfn_executions_machine ON sfn_executions (machine, start);
CREATE INDEX sfn_executions_running ON sfn_executions (start) WHERE status = 'RUNNING';
CREATE TABLE sfn_events (
  arn TEXT NOT NULL,
  id INTEGER NOT NULL,
  event TEXT NOT NULL,
  PRIMARY KEY (arn, id)
);
"""

# TTL clocks, archives, the notification outbox (skiff.governance.lifecycle) and approvals
# (skiff.governance.approvals)
_LIFECYCLE = """
CREATE TABLE gov_ttl (
  app TEXT PRIMARY KEY, base DOUBLE PRECISION NOT NULL, days INTEGER, reminded TEXT NOT NULL);
CREATE TABLE gov_archives (
  app TEXT PRIMARY KEY, path TEXT NOT NULL, archived DOUBLE PRECISION NOT NULL,
  reason TEXT NOT NULL, routes TEXT NOT NULL);
CREATE TABLE gov_outbox (
  id BIGSERIAL PRIMARY KEY, channel TEXT NOT NULL, payload TEXT NOT NULL,
  created DOUBLE PRECISION NOT NULL, attempts INTEGER NOT NULL,
  next_at DOUBLE PRECISION NOT NULL, delivered DOUBLE PRECISION, error TEXT NOT NULL);
CREATE INDEX gov_outbox_due ON gov_outbox (next_at) WHERE delivered IS NULL;
CREATE TABLE gov_approvals (
  id TEXT PRIMARY KEY, app TEXT NOT NULL, requester TEXT NOT NULL, scopes TEXT NOT NULL,
  created DOUBLE PRECISION NOT NULL, state TEXT NOT NULL, decided_by TEXT,
  decided DOUBLE PRECISION, reason TEXT NOT NULL, source TEXT NOT NULL);
CREATE TABLE gov_approved_scopes (
  app TEXT NOT NULL, scope TEXT NOT NULL, approved_by TEXT NOT NULL,
  ts DOUBLE PRECISION NOT NULL, PRIMARY KEY (app, scope));
"""

# budgets per owner and the notices claimed per month (skiff.governance.budgets); the
# cost model's sums over a time window (InvocationLog.usage) read by (app, ts)
_BUDGETS = """
CREATE INDEX invocations_app_ts ON invocations (app, ts);
CREATE TABLE gov_budgets (
  owner TEXT NOT NULL, metric TEXT NOT NULL, limit_value DOUBLE PRECISION NOT NULL,
  action TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, created_by TEXT NOT NULL,
  PRIMARY KEY (owner, metric));
CREATE TABLE gov_budget_notices (
  budget TEXT NOT NULL, period DOUBLE PRECISION NOT NULL, threshold INTEGER NOT NULL,
  PRIMARY KEY (budget, period, threshold));
"""

# alert state, history, silences and the alert outbox (skiff.store.alerts)
_ALERTS = """
CREATE TABLE alerts (
  key TEXT PRIMARY KEY, rule TEXT NOT NULL, subject TEXT NOT NULL, severity TEXT NOT NULL,
  state TEXT NOT NULL, summary TEXT NOT NULL, value DOUBLE PRECISION NOT NULL,
  threshold DOUBLE PRECISION NOT NULL, episode INTEGER NOT NULL,
  started DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL,
  resolved DOUBLE PRECISION, acked_by TEXT, acked_at DOUBLE PRECISION,
  silenced BOOLEAN NOT NULL);
CREATE TABLE alert_events (
  seq BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, event TEXT NOT NULL,
  at DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE alert_silences (
  id TEXT PRIMARY KEY, matchers TEXT NOT NULL, until DOUBLE PRECISION NOT NULL,
  created DOUBLE PRECISION NOT NULL, created_by TEXT NOT NULL, comment TEXT NOT NULL);
CREATE TABLE alert_outbox (
  id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, channel TEXT NOT NULL, payload TEXT NOT NULL,
  created DOUBLE PRECISION NOT NULL, attempts INTEGER NOT NULL,
  next_at DOUBLE PRECISION NOT NULL, delivered DOUBLE PRECISION, error TEXT NOT NULL);
CREATE INDEX alert_outbox_due ON alert_outbox (next_at) WHERE delivered IS NULL;
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "0001_initial",
              postgres=_BUS + _KV + _REGISTRY + _RECORDS + _TRIGGERS + _SECRETS),
    Migration(2, "0002_async_waits", postgres=_ASYNC_WAITS),
    Migration(3, "0003_governance", postgres=_GOVERNANCE),
    # every invocation record carries the trace it ran under (SQLite: the Store adds the
    # column to a file that lacks it, since its tables are made after the migrations)
    Migration(4, "0004_invocation_trace_id",
              postgres="ALTER TABLE invocations ADD COLUMN trace_id TEXT NOT NULL DEFAULT '';"),
    Migration(5, "0005_workflows", postgres=_WORKFLOWS),
    Migration(6, "0006_lifecycle", postgres=_LIFECYCLE),
    Migration(7, "0007_budgets", postgres=_BUDGETS),
    Migration(8, "0008_alerts", postgres=_ALERTS),
    # the app a state machine acts as (its service integrations reach that app's KV,
    # queues and events) and its triggers; the node running each execution and until when
    # (its lease); SQLite: the workflow history adds the columns to its own file
    Migration(9, "0009_sfn_machine_app_leases",
              postgres="ALTER TABLE sfn_machines ADD COLUMN app TEXT, "
                       "ADD COLUMN triggers TEXT;\n"
                       "ALTER TABLE sfn_executions ADD COLUMN owner TEXT, "
                       "ADD COLUMN lease_until DOUBLE PRECISION;"),
)

#: The schema version this code reads and writes.
CODE_VERSION = MIGRATIONS[-1].version

#: A key of Postgres' advisory lock space for ``skiff migrate`` ("skif").
_MIGRATE_LOCK = 0x736B6966

_TABLE_PG = ("CREATE TABLE IF NOT EXISTS skiff_schema (version INTEGER PRIMARY KEY, "
             "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
_TABLE_SQLITE = ("CREATE TABLE IF NOT EXISTS skiff_schema (version INTEGER PRIMARY KEY, "
                 "name TEXT NOT NULL, applied_at REAL NOT NULL)")


def _name(version: int) -> str:
    for m in MIGRATIONS:
        if m.version == version:
            return m.name
    return f"{version:04d}_unknown"


def _verdict(current: int, where: str) -> None:
    if current == CODE_VERSION:
        return
    if current < CODE_VERSION:
        pending = ", ".join(m.name for m in MIGRATIONS if m.version > current)
        raise SchemaMismatch(
            f"the database at {where} is at schema version {current} and this node needs "
            f"{CODE_VERSION}: run `skiff migrate` to apply {pending}",
            database_version=current, code_version=CODE_VERSION, migrations=pending)
    raise SchemaMismatch(
        f"the database at {where} is at schema version {current} ({_name(current)}), newer "
        f"than this node's {CODE_VERSION} ({_name(CODE_VERSION)}): upgrade Skiff on this node "
        "(a node never writes rows of a schema it does not know)",
        database_version=current, code_version=CODE_VERSION)


# -- PostgreSQL -------------------------------------------------------------------------
def postgres_version(db: Any) -> int:
    """The highest migration applied to the database (0 for an empty one)."""
    with db.connection() as conn:
        exists = conn.execute("SELECT to_regclass('skiff_schema')").fetchone()[0]
        if exists is None:
            return 0
        return conn.execute("SELECT COALESCE(MAX(version), 0) FROM skiff_schema").fetchone()[0]


def migrate_postgres(db: Any) -> list[str]:
    """Apply every pending migration, each in its own transaction; return their names."""
    applied = []
    with db.connection() as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATE_LOCK,))
        try:
            conn.execute(_TABLE_PG)
            current = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM skiff_schema").fetchone()[0]
            _refuse_newer(current, mask_url(db.url))
            for m in MIGRATIONS:
                if m.version <= current:
                    continue
                with conn.transaction():
                    conn.execute(m.postgres)
                    conn.execute("INSERT INTO skiff_schema VALUES (%s, %s, %s)",
                                 (m.version, m.name, time.time()))
                applied.append(m.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATE_LOCK,))
    return applied


def check_postgres(db: Any, where: str) -> None:
    _verdict(postgres_version(db), where)


# -- SQLite -----------------------------------------------------------------------------
def sqlite_version(conn: Any) -> int:
    conn.execute(_TABLE_SQLITE)
    return conn.execute("SELECT COALESCE(MAX(version), 0) FROM skiff_schema").fetchone()[0]


def migrate_sqlite(conn: Any, where: str) -> list[str]:
    applied = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = sqlite_version(conn)
        _refuse_newer(current, where)
        for m in MIGRATIONS:
            if m.version > current:
                if m.sqlite:
                    conn.executescript(m.sqlite)  # pragma: no cover - none yet
                conn.execute("INSERT INTO skiff_schema VALUES (?, ?, ?)",
                             (m.version, m.name, time.time()))
                applied.append(m.name)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return applied


def sqlite_needs_nothing(conn: Any) -> bool:
    """Every pending migration changes nothing on SQLite (its backends create their
    own tables), so a node may record them itself: an existing home keeps starting."""
    current = sqlite_version(conn)
    return all(not m.sqlite for m in MIGRATIONS if m.version > current)


def check_sqlite(conn: Any, where: str) -> None:
    _verdict(sqlite_version(conn), where)


def _refuse_newer(current: int, where: str) -> None:
    if current > CODE_VERSION:
        _verdict(current, where)
