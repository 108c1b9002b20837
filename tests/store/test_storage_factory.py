"""open_storage: one URL picks every backend, after the schema version is checked."""

from __future__ import annotations

import socket
import sqlite3
import uuid
from pathlib import Path

import pytest

from skiff.errors import DatabaseUnavailable, SchemaMismatch
from skiff.storage import database_url, migrate, open_storage
from skiff.store.migrations import CODE_VERSION, MIGRATIONS
from skiff.store.postgres import mask_url
from tests.postgres import postgres_url


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_default_is_one_sqlite_file_under_home(tmp_path: Path) -> None:
    """No URL: sqlite under $SKIFF_HOME, the registry in skiff.db, the hot files beside it."""
    url = database_url(tmp_path)
    assert url == f"sqlite://{tmp_path.resolve()}/skiff.db"
    storage = open_storage(url, home=tmp_path)
    try:
        storage.store.set_current("a", "r1")
        storage.kv.put("a", "k", 1)
        storage.broker.send("q", b"x")
        assert storage.store.apps() == [("a", "r1")]
        assert storage.trigger_state is not None
    finally:
        storage.close()
    assert {p.name for p in tmp_path.glob("*.db")} >= {"skiff.db", "kv.db", "bus.db",
                                                       "events.db", "secrets.db"}


def test_a_sqlite_file_from_a_newer_skiff_is_refused(tmp_path: Path) -> None:
    """A schema newer than the code refuses to open, naming both versions."""
    path = tmp_path / "skiff.db"
    migrate(f"sqlite://{path}")
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO skiff_schema VALUES (?, '0099_future', 0)", (CODE_VERSION + 98,))
    with pytest.raises(SchemaMismatch) as err:
        open_storage(f"sqlite://{path}", home=tmp_path)
    assert err.value.code == "schema_mismatch"
    assert f"schema version {CODE_VERSION + 98}" in err.value.message
    assert "upgrade Skiff" in err.value.message


def test_a_sqlite_home_of_schema_1_migrates_to_records_with_a_trace_id(tmp_path: Path) -> None:
    """A skiff.db written before invocation records had trace ids: `skiff migrate`
    brings it forward, and its old records read back with an empty trace id."""
    path = tmp_path / "skiff.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE skiff_schema (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                   "applied_at REAL NOT NULL)")
        db.execute("INSERT INTO skiff_schema VALUES (1, '0001_initial', 0)")
        db.execute("CREATE TABLE invocations (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT, "
                   "app TEXT, revision TEXT, instance TEXT, trigger TEXT, cold INTEGER, "
                   "init_ms REAL, duration_ms REAL, queued_ms REAL, billed_ms INTEGER, "
                   "memory_mb INTEGER, status INTEGER, error TEXT, ts REAL)")
        db.execute("INSERT INTO invocations (id, app, revision, instance, trigger, cold, init_ms,"
                   " duration_ms, queued_ms, billed_ms, memory_mb, status, error, ts) VALUES "
                   "('old', 'a', 'r1', 'i1', 'http', 0, 0, 1, 0, 1, 128, 200, NULL, 1)")
    with pytest.raises(SchemaMismatch) as err:
        open_storage(f"sqlite://{path}", home=tmp_path)
    assert "skiff migrate" in err.value.message and "0002_invocation_trace_id" in err.value.message
    assert migrate(f"sqlite://{path}") == ["0002_invocation_trace_id"]
    storage = open_storage(f"sqlite://{path}", home=tmp_path)
    try:
        assert [r["trace_id"] for r in storage.store.invocations("a")] == [""]
    finally:
        storage.close()


def test_urls_of_another_engine_are_refused(tmp_path: Path) -> None:
    """Only sqlite:/// and postgresql:// are engines; the password never shows."""
    with pytest.raises(DatabaseUnavailable) as err:
        open_storage("mysql://root:hunter2@db/skiff", home=tmp_path)
    assert "hunter2" not in err.value.message and "***" in err.value.message


def test_an_unreachable_postgres_names_the_url_without_its_password(tmp_path: Path) -> None:
    """Connection refused: DatabaseUnavailable at once, the URL masked (no server needed)."""
    url = f"postgresql://skiff:hunter2@127.0.0.1:{_closed_port()}/skiff"
    with pytest.raises(DatabaseUnavailable) as err:
        open_storage(url, home=tmp_path)
    assert err.value.code == "database_unavailable" and err.value.status == 503
    assert "hunter2" not in err.value.message
    assert mask_url(url) in err.value.message


def test_mask_url() -> None:
    """Only the password is hidden; URLs without one are unchanged."""
    assert mask_url("postgresql://u:p%40ss@h:5432/d?x=1") == "postgresql://u:***@h:5432/d?x=1"
    assert mask_url("postgresql://u@h/d") == "postgresql://u@h/d"


@pytest.fixture
def fresh_database() -> str:
    """A new, empty database on the test server; dropped afterwards."""
    import psycopg

    base = postgres_url()
    name = f"skiff_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_postgres_needs_skiff_migrate_first_then_opens(fresh_database: str,
                                                       tmp_path: Path) -> None:
    """An empty database is older than the code: refused, naming the migration; after
    `migrate` every interface works on it."""
    with pytest.raises(SchemaMismatch) as err:
        open_storage(fresh_database, home=tmp_path)
    assert "skiff migrate" in err.value.message and "0001_initial" in err.value.message
    assert migrate(fresh_database) == [m.name for m in MIGRATIONS]
    assert migrate(fresh_database) == []
    storage = open_storage(fresh_database, home=tmp_path)
    try:
        storage.store.set_current("a", "r1")
        storage.kv.put("a", "k", 1)
        storage.broker.send("q", b"x")
        storage.trigger_state.set_checkpoint("a", "k", 1.0)
        assert storage.store.apps() == [("a", "r1")]
        assert [d.body for d in storage.broker.receive("q")] == [b"x"]
    finally:
        storage.close()


def test_postgres_newer_than_the_code_is_refused(fresh_database: str, tmp_path: Path) -> None:
    """A database migrated by a newer Skiff refuses this node, and migrate refuses too."""
    import psycopg

    migrate(fresh_database)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("INSERT INTO skiff_schema VALUES (%s, '0099_future', 0)",
                     (CODE_VERSION + 98,))
    for attempt in (lambda: open_storage(fresh_database, home=tmp_path),
                    lambda: migrate(fresh_database)):
        with pytest.raises(SchemaMismatch) as err:
            attempt()
        assert "newer than this node's" in err.value.message
