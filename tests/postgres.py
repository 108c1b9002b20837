"""The PostgreSQL side of the contract suites: one throwaway schema per test.

Postgres-backed parameters skip unless SKIFF_TEST_DATABASE_URL names a
database; CI starts one (.ci/run). Locally: ``eval "$(.ci/postgres start)"``
(as root) and run the tests in that shell.
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SKIP_REASON = ("no PostgreSQL: set SKIFF_TEST_DATABASE_URL, e.g. run "
               "'eval \"$(.ci/postgres start)\"' as root first (CI does)")


def postgres_url() -> str:
    url = os.environ.get("SKIFF_TEST_DATABASE_URL", "")
    if not url and os.environ.get("CI") == "true":  # CI runs them: a skip there hides a gap
        pytest.fail("CI runs the PostgreSQL suites, and SKIFF_TEST_DATABASE_URL is not set "
                    "(.ci/run exports it)")
    if not url:
        pytest.skip(SKIP_REASON)
    return url


@pytest.fixture
def pg_database() -> Iterator[object]:
    """A migrated PostgresDatabase on a schema of its own, dropped afterwards."""
    from skiff.store.migrations import migrate_postgres
    from skiff.store.postgres import PostgresDatabase

    url = postgres_url()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = PostgresDatabase(url, pool_size=1)
    with admin.connection() as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    db = PostgresDatabase(url, pool_size=4, options=f"-c search_path={schema}")
    try:
        migrate_postgres(db)
        yield db
    finally:
        db.close()
        with admin.connection() as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def contract_backends(name: str, sqlite: Callable[[Path], Any], postgres: str) -> Any:
    """A fixture ``name`` over both backends of one interface, for its contract suite:
    ``sqlite(tmp_path)`` builds the embedded one; ``postgres`` names the other as
    "module:Class" (imported only when the Postgres parameter runs), built on a migrated
    throwaway schema. Each is closed afterwards."""

    @pytest.fixture(name=name, params=["sqlite", "postgres"])
    def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
        if request.param == "postgres":
            module, _, cls = postgres.partition(":")
            made = getattr(importlib.import_module(module), cls)(
                request.getfixturevalue("pg_database"))
        else:
            made = sqlite(tmp_path)
        yield made
        made.close()

    return backend
