"""Fixtures of the storage contract suites: every backend of each interface."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.governance.secret_rows import SecretRows, SQLiteSecretRows
from skiff.store.records import InvocationLog, LogRetention
from skiff.store.registry import Registry
from skiff.store.sqlite import Store
from skiff.store.trigger_state import SQLiteTriggerState, TriggerState
from tests.postgres import pg_database  # noqa: F401 - a fixture


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    if request.param == "postgres":
        from skiff.store.registry_postgres import PostgresRegistry

        r: Registry = PostgresRegistry(request.getfixturevalue("pg_database"))
    else:
        r = Store(tmp_path / "skiff.db")
    yield r
    r.close()


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


@pytest.fixture(params=["sqlite", "postgres"])
def trigger_state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TriggerState]:
    if request.param == "postgres":
        from skiff.store.trigger_state_postgres import PostgresTriggerState

        t: TriggerState = PostgresTriggerState(request.getfixturevalue("pg_database"))
    else:
        t = SQLiteTriggerState(tmp_path / "events.db")
    yield t
    t.close()


@pytest.fixture(params=["sqlite", "postgres"])
def secret_rows(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SecretRows]:
    if request.param == "postgres":
        from skiff.governance.secret_rows_postgres import PostgresSecretRows

        rows: SecretRows = PostgresSecretRows(request.getfixturevalue("pg_database"))
    else:
        rows = SQLiteSecretRows(tmp_path / "secrets.db")
    yield rows
    rows.close()
