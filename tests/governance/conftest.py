"""Fixtures of the governance contract suites: every backend of each interface."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.governance.audit import AuditLog, SQLiteAuditLog
from skiff.governance.identity_rows import IdentityRows, SQLiteIdentityRows
from skiff.governance.lifecycle_rows import LifecycleRows, SQLiteLifecycleRows
from tests.postgres import pg_database  # noqa: F401 - a fixture


@pytest.fixture(params=["sqlite", "postgres"])
def identity_rows(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IdentityRows]:
    if request.param == "postgres":
        from skiff.governance.identity_rows_postgres import PostgresIdentityRows

        rows: IdentityRows = PostgresIdentityRows(request.getfixturevalue("pg_database"))
    else:
        rows = SQLiteIdentityRows(tmp_path / "governance.db")
    yield rows
    rows.close()


@pytest.fixture(params=["sqlite", "postgres"])
def audit_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditLog]:
    if request.param == "postgres":
        from skiff.governance.identity_rows_postgres import PostgresAuditLog

        log: AuditLog = PostgresAuditLog(request.getfixturevalue("pg_database"))
    else:
        log = SQLiteAuditLog(tmp_path / "governance.db")
    yield log
    log.close()


@pytest.fixture(params=["sqlite", "postgres"])
def lifecycle_rows(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LifecycleRows]:
    if request.param == "postgres":
        from skiff.governance.lifecycle_rows_postgres import PostgresLifecycleRows

        rows: LifecycleRows = PostgresLifecycleRows(request.getfixturevalue("pg_database"))
    else:
        rows = SQLiteLifecycleRows(tmp_path / "governance.db")
    yield rows
    rows.close()
