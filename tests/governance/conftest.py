"""Fixtures of the governance contract suites: every backend of each interface."""

from __future__ import annotations

from skiff.governance.audit import SQLiteAuditLog
from skiff.governance.identity_rows import SQLiteIdentityRows
from skiff.governance.lifecycle_rows import SQLiteLifecycleRows
from tests.postgres import contract_backends, pg_database  # noqa: F401 - a fixture

identity_rows = contract_backends(
    "identity_rows", lambda tmp: SQLiteIdentityRows(tmp / "governance.db"),
    "skiff.governance.identity_rows_postgres:PostgresIdentityRows")

audit_log = contract_backends(
    "audit_log", lambda tmp: SQLiteAuditLog(tmp / "governance.db"),
    "skiff.governance.identity_rows_postgres:PostgresAuditLog")

lifecycle_rows = contract_backends(
    "lifecycle_rows", lambda tmp: SQLiteLifecycleRows(tmp / "governance.db"),
    "skiff.governance.lifecycle_rows_postgres:PostgresLifecycleRows")
