"""SKIFF_DATABASE_URL end to end: ``skiff up`` on PostgreSQL, and the refusals at start."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import TEST_APPS
from tests.postgres import postgres_url


def _up(home: Path, env: dict) -> subprocess.CompletedProcess:
    """``skiff up`` expected to refuse: it must exit by itself."""
    return subprocess.run([sys.executable, "-m", "skiff", "up", "--port", "0", "--home", str(home)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_up_with_an_unreachable_database_exits_naming_it(tmp_path: Path) -> None:
    """A database that refuses connections: exit 1, the URL in the error, no password."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://skiff:hunter2@127.0.0.1:{port}/skiff"
    done = _up(tmp_path / "home", {"SKIFF_DATABASE_URL": url})
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1, output
    assert "database_unavailable" in output
    assert f"postgresql://skiff:***@127.0.0.1:{port}/skiff" in output
    assert "hunter2" not in output


def test_up_on_a_home_from_a_newer_skiff_refuses(tmp_path: Path) -> None:
    """skiff.db migrated past this code's schema: exit 1 naming the versions."""
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(home / "skiff.db") as db:
        db.execute("CREATE TABLE skiff_schema (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                   "applied_at REAL NOT NULL)")
        db.execute("INSERT INTO skiff_schema VALUES (99, '0099_future', 0)")
    done = _up(home, {})
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1, output
    assert "schema_mismatch" in output and "schema version 99" in output


@pytest.fixture
def pg_url() -> str:
    import psycopg

    base = postgres_url()
    name = f"skiff_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_up_on_postgres_serves_and_records_there(pg_url: str, start_server,
                                                 tmp_path: Path) -> None:
    """After `skiff migrate`, a node on PostgreSQL serves an app; its revision, records and
    logs are rows of that database (not of a file under the home)."""
    import psycopg

    migrated = subprocess.run([sys.executable, "-m", "skiff", "migrate", "--database-url",
                               pg_url], capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    server = start_server(TEST_APPS / "hello", env={"SKIFF_DATABASE_URL": pg_url})
    assert server.http.get("/hello/").status_code == 200, "\n".join(server.lines)
    server.wait_for(lambda: server.admin.get("/apps/hello/invocations").json(), "a record")
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT name FROM apps").fetchall() == [("hello",)]
        assert conn.execute("SELECT count(*) FROM invocations WHERE app = 'hello'"
                            ).fetchone()[0] >= 1
    assert not (tmp_path / "home" / "skiff.db").exists()


def test_local_secrets_cli_writes_where_the_server_reads(pg_url: str, tmp_path: Path) -> None:
    """`skiff secrets set` on a node of a PostgreSQL cluster stores the sealed row in the
    database, not in a secrets.db of its home."""
    import psycopg

    env = {**os.environ, "SKIFF_DATABASE_URL": pg_url}
    env.pop("SKIFF_URL", None)
    home = tmp_path / "home"
    for args in (["migrate"], ["secrets", "set", "api-key", "s3cr3t", "--home", str(home)]):
        done = subprocess.run([sys.executable, "-m", "skiff", *args], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT name, version, ciphertext FROM secret_versions").fetchall()
    assert [(n, v) for n, v, _ in rows] == [("api-key", 1)]
    assert b"s3cr3t" not in bytes(rows[0][2])
    assert not (home / "secrets.db").exists()
