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


# What the event plane of an older server created in events.db (before the trigger
# state took it over): its rows must read the same after an upgrade.
OLD_EVENTS_SCHEMA = """
CREATE TABLE async_invocations (id TEXT PRIMARY KEY, app TEXT NOT NULL, status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, updated REAL NOT NULL,
  status_code INTEGER, result BLOB, error TEXT);
CREATE INDEX async_invocations_app ON async_invocations (app, status);
CREATE TABLE async_waits (id TEXT PRIMARY KEY, waits INTEGER NOT NULL);
CREATE TABLE schedule_checkpoints (app TEXT NOT NULL, trigger TEXT NOT NULL,
  last_fire REAL NOT NULL, PRIMARY KEY (app, trigger));
INSERT INTO async_invocations VALUES ('done', 'a', 'succeeded', 1, 1.0, 2.0, 200, X'7B7D', NULL);
INSERT INTO async_invocations VALUES ('waiting', 'a', 'retrying', 2, 1.0, 2.0, 500, NULL, 'x');
INSERT INTO async_invocations VALUES ('queued', 'a', 'queued', 0, 3.0, 3.0, NULL, NULL, NULL);
INSERT INTO async_waits VALUES ('waiting', 2);
INSERT INTO schedule_checkpoints VALUES ('a', '0:rate(1 minute)@UTC', 1800000000.0);
"""


def test_a_home_of_an_older_server_opens_with_its_event_state(tmp_path: Path) -> None:
    """A home at schema version 1 opens without `skiff migrate` (what came after changes
    nothing in SQLite), and the statuses, waits and checkpoints its events.db holds are
    the trigger state's."""
    with sqlite3.connect(tmp_path / "skiff.db") as db:
        db.execute("CREATE TABLE skiff_schema (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                   " applied_at REAL NOT NULL)")
        db.execute("INSERT INTO skiff_schema VALUES (1, '0001_initial', 0)")
    with sqlite3.connect(tmp_path / "events.db") as db:
        db.executescript(OLD_EVENTS_SCHEMA)
    storage = open_storage(database_url(tmp_path), home=tmp_path)
    try:
        state = storage.trigger_state
        assert state.async_status("done")["result"] == b"{}"
        assert state.async_status("waiting")["status"] == "retrying"
        assert state.async_waits("waiting") == 2
        assert state.pending_async("a") == 2
        assert state.checkpoint("a", "0:rate(1 minute)@UTC") == 1800000000.0
        state.forget_app("a")
        assert state.async_waits("waiting") == 0 and state.pending_async("a") == 0
    finally:
        storage.close()
    with sqlite3.connect(tmp_path / "skiff.db") as db:
        assert db.execute("SELECT max(version) FROM skiff_schema").fetchone()[0] == CODE_VERSION


def test_a_sqlite_home_of_schema_1_reads_its_records_with_a_trace_id(tmp_path: Path) -> None:
    """A skiff.db written before invocation records had trace ids opens without
    `skiff migrate` (the Store adds the column), its old records with an empty trace id."""
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


def test_postgres_of_version_1_is_brought_forward_by_migrate(fresh_database: str,
                                                             tmp_path: Path) -> None:
    """A database an older node migrated (version 1) refuses this node, naming 0002;
    `skiff migrate` applies only that, and the statuses the old nodes wrote stay."""
    import psycopg

    first = MIGRATIONS[0]
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE skiff_schema (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                     " applied_at DOUBLE PRECISION NOT NULL)")
        conn.execute(first.postgres)
        conn.execute("INSERT INTO skiff_schema VALUES (%s, %s, 0)", (first.version, first.name))
        conn.execute("INSERT INTO async_invocations (id, app, status, created, updated) "
                     "VALUES ('old', 'a', 'queued', 1, 1)")
    with pytest.raises(SchemaMismatch) as err:
        open_storage(fresh_database, home=tmp_path)
    assert "0002_async_waits" in err.value.message
    assert migrate(fresh_database) == [m.name for m in MIGRATIONS[1:]]
    storage = open_storage(fresh_database, home=tmp_path)
    try:
        state = storage.trigger_state
        assert state.async_status("old")["status"] == "queued"
        assert state.pending_async("a") == 1
        state.set_async_waits("old", 1)
        assert state.async_waits("old") == 1
    finally:
        storage.close()
