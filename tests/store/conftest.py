"""Fixtures of the storage contract suites: every backend of each interface."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.governance.secret_rows import SQLiteSecretRows
from skiff.store.alerts import SQLiteAlertRows
from skiff.store.records import InvocationLog, LogRetention
from skiff.store.sqlite import Store
from skiff.store.trigger_state import SQLiteTriggerState, TriggerState
from skiff.store.workflow_history import SQLiteWorkflowHistory
from tests.postgres import contract_backends, pg_database  # noqa: F401 - a fixture

registry = contract_backends(
    "registry", lambda tmp: Store(tmp / "skiff.db"),
    "skiff.store.registry_postgres:PostgresRegistry")

RETENTION = LogRetention(max_age_days=1, max_lines_per_app=100, max_bytes_per_app=10_000)


@pytest.fixture(params=["sqlite", "postgres"])
def records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InvocationLog]:
    if request.param == "postgres":
        from skiff.store.records_postgres import PostgresInvocationLog

        r: InvocationLog = PostgresInvocationLog(request.getfixturevalue("pg_database"),
                                                 retention=RETENTION)
    else:
        r = Store(tmp_path / "skiff.db", retention=RETENTION)
    yield r
    r.close()


@pytest.fixture(params=["sqlite", "sqlite-exclusive", "postgres"])
def trigger_state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TriggerState]:
    """Each backend; "sqlite-exclusive" is the platform's own events.db (one connection,
    pending counts kept in memory)."""
    if request.param == "postgres":
        from skiff.store.trigger_state_postgres import PostgresTriggerState

        t: TriggerState = PostgresTriggerState(request.getfixturevalue("pg_database"))
    else:
        t = SQLiteTriggerState(tmp_path / "events.db",
                               exclusive=request.param == "sqlite-exclusive")
    yield t
    t.close()


@pytest.fixture(params=["sqlite", "postgres"])
def two_trigger_states(request: pytest.FixtureRequest,
                       tmp_path: Path) -> Iterator[tuple[TriggerState, TriggerState]]:
    """Two TriggerStates on one database, each with its own connections (two nodes;
    on SQLite, two connections to one file)."""
    if request.param == "postgres":
        from skiff.store.postgres import PostgresDatabase
        from skiff.store.trigger_state_postgres import PostgresTriggerState

        db = request.getfixturevalue("pg_database")
        with db.connection() as conn:
            schema = conn.execute("SHOW search_path").fetchone()[0]
        other = PostgresDatabase(db.url, pool_size=4, options=f"-c search_path={schema}")
        pair: tuple[TriggerState, TriggerState] = (PostgresTriggerState(db),
                                                   PostgresTriggerState(other))
        yield pair
        other.close()
    else:
        pair = (SQLiteTriggerState(tmp_path / "events.db"),
                SQLiteTriggerState(tmp_path / "events.db"))
        yield pair
        for t in pair:
            t.close()


secret_rows = contract_backends(
    "secret_rows", lambda tmp: SQLiteSecretRows(tmp / "secrets.db"),
    "skiff.governance.secret_rows_postgres:PostgresSecretRows")

workflow_history = contract_backends(
    "workflow_history", lambda tmp: SQLiteWorkflowHistory(tmp / "workflows.db", exclusive=True),
    "skiff.store.workflow_history_postgres:PostgresWorkflowHistory")

alert_rows = contract_backends(
    "alert_rows", lambda tmp: SQLiteAlertRows(tmp / "alerts.db"),
    "skiff.store.alerts_postgres:PostgresAlertRows")
