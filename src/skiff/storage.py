"""One URL picks every storage backend: ``open_storage(url) -> Storage``.

This is the composition side of storage (beside the composition root): it is
the one module that knows the backend families of ``store``, ``bus`` (the
broker) and ``governance`` (the secret rows), which do not import each other
upward.

``SKIFF_DATABASE_URL`` is either

- ``sqlite:///path/to/skiff.db`` (the default: ``$SKIFF_HOME/skiff.db``): the
  embedded engine. The registry and invocation log live in that file; the
  broker, KV, event state and secrets stay in files beside it (``bus.db``,
  ``kv.db``, ``events.db``, ``secrets.db``), because the broker and KV hold
  their files with an exclusive lock, which was measured at +22 % async
  throughput (BENCHMARKS.md) and which one shared file cannot have. Existing
  homes keep their data where it is.
- ``postgresql://user:password@host:port/db``: the shared engine, for several
  nodes on one database (``pip install 'skiff[postgres]'``). Its schema is
  created and upgraded by ``skiff migrate``, never by a starting node.

Either way the schema version is checked before anything is opened: a node
refuses a database older or newer than its code (SchemaMismatch, naming the
migration), and an unreachable one (DatabaseUnavailable, naming the URL with
its password masked).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from skiff.bus.broker import Broker
from skiff.errors import DatabaseUnavailable
from skiff.governance.approvals import ApprovalRows
from skiff.governance.audit import AuditLog
from skiff.governance.budgets import BudgetRows
from skiff.governance.identity_rows import IdentityRows
from skiff.governance.lifecycle_rows import LifecycleRows
from skiff.governance.secret_rows import SecretRows
from skiff.store import migrations
from skiff.store.alerts import AlertRows
from skiff.store.kv import KV
from skiff.store.migrations import CODE_VERSION
from skiff.store.postgres import mask_url
from skiff.store.records import InvocationLog, LogRetention
from skiff.store.registry import Registry
from skiff.store.trigger_state import TriggerState
from skiff.store.uids import UidRegistry
from skiff.store.workflow_history import WorkflowHistory

__all__ = ["CODE_VERSION", "Storage", "database_url", "mask_url", "migrate", "open_audit",
           "open_secret_rows", "open_storage", "sqlite_path"]

DEFAULT_FILE = "skiff.db"


@dataclass(frozen=True)
class Storage:
    """Every storage interface of one node, opened from one URL. ``close`` once."""

    url: str  # password masked
    #: the registry and the invocation log in one object (Platform's ``store``)
    store: Registry | InvocationLog
    broker: Broker
    kv: KV
    secret_rows: SecretRows
    #: the event plane's async statuses and schedule checkpoints
    trigger_state: TriggerState
    #: users, groups, service tokens; and the audit trail (``governance.db`` on SQLite)
    identities: IdentityRows | None = None
    audit: AuditLog | None = None
    #: state machines, executions and their histories (``workflows.db`` on SQLite)
    workflows: WorkflowHistory | None = None
    #: TTL clocks, archives and the notification outbox (``governance.db`` on SQLite)
    lifecycle: LifecycleRows | None = None
    #: held deploys and the scopes approved per app
    approvals: ApprovalRows | None = None
    #: budgets per owner and their notices (skiff.governance.budgets)
    budgets: BudgetRows | None = None
    #: alert state, history, silences and their outbox (``alerts.db`` on SQLite)
    alerts: AlertRows | None = None

    def close(self) -> None:
        for part in (self.broker, self.kv, self.secret_rows, self.trigger_state,
                     self.identities, self.audit, self.workflows, self.lifecycle,
                     self.approvals, self.budgets, self.alerts, self.store):
            if part is not None:
                part.close()
        database = getattr(self.store, "db", None)
        if database is not None:
            database.close()


def database_url(home: Path, url: str | None = None) -> str:
    """``url``, or the embedded default under ``home``."""
    return url or f"sqlite://{(Path(home) / DEFAULT_FILE).resolve()}"


def sqlite_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc or not parts.path or parts.path == "/":
        raise DatabaseUnavailable(
            f"a SQLite database URL names a file: sqlite:///path/to/skiff.db, got {url!r}",
            url=url)
    return Path(unquote(parts.path))


def open_storage(url: str, *, home: Path, retention: LogRetention | None = None,
                 uids: UidRegistry | None = None) -> Storage:
    """Open every backend ``url`` names, after checking its schema version.

    ``uids``: the host-wide uid registry (root).
    """
    scheme = urlsplit(url).scheme
    try:
        if scheme == "sqlite":
            return _open_sqlite(sqlite_path(url), retention, uids)
        if scheme in ("postgresql", "postgres"):
            return _open_postgres(url, retention, uids)
        raise DatabaseUnavailable(
            f"SKIFF_DATABASE_URL must start with sqlite:/// or postgresql://, got "
            f"{mask_url(url)!r}", url=mask_url(url))
    except BaseException:
        if uids is not None:  # the stores own it once opened; until then, the caller's is ours
            uids.close()
        raise


def _open_sqlite(path: Path, retention: LogRetention | None,
                 uids: UidRegistry | None) -> Storage:
    from skiff.bus.sqlite import SQLiteBroker
    from skiff.governance.secret_rows import SQLiteSecretRows
    from skiff.store.kv_sqlite import SQLiteKV
    from skiff.store.sqlite import Store
    from skiff.store.trigger_state import SQLiteTriggerState
    from skiff.store.workflow_history import SQLiteWorkflowHistory

    where = str(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    except (OSError, sqlite3.Error) as exc:
        raise DatabaseUnavailable(f"cannot open the database sqlite://{where}: {exc}",
                                  url=f"sqlite://{where}") from None
    try:
        # one node owns the file: a new (or pre-versioning) file is brought to the
        # code's version here, and so are migrations that change no SQLite table;
        # any other mismatch is the operator's call
        if migrations.sqlite_version(conn) == 0 or migrations.sqlite_needs_nothing(conn):
            migrations.migrate_sqlite(conn, where)
        migrations.check_sqlite(conn, where)
    finally:
        conn.close()
    opened: list = []
    try:
        store = Store(path, retention=retention, uids=uids)
        opened.append(store)
        # only this process opens these files (the CLI goes through the admin API)
        kv = SQLiteKV(path.parent / "kv.db", exclusive=True)
        opened.append(kv)
        broker = SQLiteBroker(path.parent / "bus.db", durable=True, exclusive=True)
        opened.append(broker)
        rows = SQLiteSecretRows(path.parent / "secrets.db")
        opened.append(rows)
        # the file older servers' event planes wrote: their state is read as it is
        state = SQLiteTriggerState(path.parent / "events.db", exclusive=True)
        opened.append(state)
        workflows = SQLiteWorkflowHistory(path.parent / "workflows.db", exclusive=True)
        opened.append(workflows)
        identities, audit = open_governance_sqlite(path.parent)
        opened += [identities, audit]
        from skiff.governance.lifecycle_rows import SQLiteLifecycleRows

        lifecycle = SQLiteLifecycleRows(path.parent / "governance.db")
        opened.append(lifecycle)
        from skiff.governance.approvals import SQLiteApprovalRows

        approvals = SQLiteApprovalRows(path.parent / "governance.db")
        opened.append(approvals)
        from skiff.governance.budgets import SQLiteBudgetRows

        budgets = SQLiteBudgetRows(path.parent / "governance.db")
        from skiff.store.alerts import SQLiteAlertRows

        alerts = SQLiteAlertRows(path.parent / "alerts.db")
    except BaseException:
        for part in reversed(opened):
            part.close()
        raise
    return Storage(f"sqlite://{where}", store, broker, kv, rows, state, identities, audit,
                   workflows, lifecycle, approvals, budgets, alerts)


def open_governance_sqlite(directory: Path) -> tuple[IdentityRows, AuditLog]:
    """The identity rows and audit log of ``governance.db`` in ``directory`` (shared
    with a local CLI, as secrets.db is)."""
    from skiff.governance.audit import SQLiteAuditLog
    from skiff.governance.identity_rows import SQLiteIdentityRows

    identities = SQLiteIdentityRows(directory / "governance.db")
    try:
        return identities, SQLiteAuditLog(directory / "governance.db")
    except BaseException:
        identities.close()
        raise


def _open_postgres(url: str, retention: LogRetention | None,
                   uids: UidRegistry | None) -> Storage:
    from skiff.bus.postgres import PostgresBroker
    from skiff.governance.secret_rows_postgres import PostgresSecretRows
    from skiff.store.kv_postgres import PostgresKV
    from skiff.store.postgres import PostgresDatabase
    from skiff.store.records_postgres import PostgresInvocationLog
    from skiff.store.registry_postgres import PostgresRegistry
    from skiff.store.trigger_state_postgres import PostgresTriggerState
    from skiff.store.workflow_history_postgres import PostgresWorkflowHistory

    class PostgresStore(PostgresRegistry, PostgresInvocationLog):
        def __init__(self, db: PostgresDatabase) -> None:
            PostgresRegistry.__init__(self, db, uids=uids)
            PostgresInvocationLog.__init__(self, db, retention=retention)

        def close(self) -> None:
            PostgresInvocationLog.close(self)
            PostgresRegistry.close(self)

    db = PostgresDatabase(url)
    try:
        migrations.check_postgres(db, mask_url(url))
        store = PostgresStore(db)
    except BaseException:
        db.close()
        raise
    from skiff.governance.approvals import PostgresApprovalRows
    from skiff.governance.budgets import PostgresBudgetRows
    from skiff.governance.identity_rows_postgres import PostgresAuditLog, PostgresIdentityRows
    from skiff.governance.lifecycle_rows_postgres import PostgresLifecycleRows
    from skiff.store.alerts_postgres import PostgresAlertRows

    return Storage(mask_url(url), store, PostgresBroker(db), PostgresKV(db),
                   PostgresSecretRows(db), PostgresTriggerState(db), PostgresIdentityRows(db),
                   PostgresAuditLog(db), PostgresWorkflowHistory(db), PostgresLifecycleRows(db),
                   PostgresApprovalRows(db), PostgresBudgetRows(db), PostgresAlertRows(db))


def open_secret_rows(url: str) -> SecretRows:
    """Only the secret rows of ``url`` (what ``skiff secrets`` on a node writes while a
    server runs): its schema is checked as at a node's start."""
    from skiff.governance.secret_rows import SQLiteSecretRows
    from skiff.governance.secret_rows_postgres import PostgresSecretRows

    return _open_one(url, lambda path: SQLiteSecretRows(path.parent / "secrets.db"),
                     PostgresSecretRows)


def open_audit(url: str) -> AuditLog:
    """Only the audit log of ``url`` (what ``skiff secrets`` on a node appends to while
    a server runs); its schema is checked as at a node's start."""
    from skiff.governance.audit import SQLiteAuditLog
    from skiff.governance.identity_rows_postgres import PostgresAuditLog

    return _open_one(url, lambda path: SQLiteAuditLog(path.parent / "governance.db"),
                     PostgresAuditLog)


def _open_one(url: str, sqlite: Callable[[Path], Any], postgres: type) -> Any:
    """One store of ``url`` on its own: on PostgreSQL with a pool of its own (closed
    with the store) and the schema checked as at a node's start."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return sqlite(sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        from skiff.store.postgres import PostgresDatabase

        class Own(postgres):  # type: ignore[misc, valid-type]
            def close(self) -> None:
                self.db.close()

        db = PostgresDatabase(url, pool_size=1)
        try:
            migrations.check_postgres(db, mask_url(url))
        except BaseException:
            db.close()
            raise
        return Own(db)
    raise DatabaseUnavailable(
        f"SKIFF_DATABASE_URL must start with sqlite:/// or postgresql://, got {mask_url(url)!r}",
        url=mask_url(url))


def migrate(url: str) -> list[str]:
    """Apply the pending migrations to the database ``url`` names; return their names."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            return migrations.migrate_sqlite(conn, str(path))
        finally:
            conn.close()
    if scheme in ("postgresql", "postgres"):
        from skiff.store.postgres import PostgresDatabase

        db = PostgresDatabase(url, pool_size=1)
        try:
            return migrations.migrate_postgres(db)
        finally:
            db.close()
    raise DatabaseUnavailable(
        f"SKIFF_DATABASE_URL must start with sqlite:/// or postgresql://, got {mask_url(url)!r}",
        url=mask_url(url))
