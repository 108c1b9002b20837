"""The database lost while a node runs: sync requests to plain apps go on, async
accepts get 503 database_unavailable, nothing accepted before is lost, and the
node resumes by itself when the database is back. On a cluster of the test's own
(stopped and restarted here), not the shared one."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TEST_APPS, SkiffServer
from tests.multinode.cluster import PgCluster

APPS = Path(__file__).resolve().parent / "apps"
EVENT = {"x-skiff-invocation-type": "Event"}


@pytest.fixture(scope="module")
def database_server():
    c = PgCluster()
    yield c
    c.close()


@pytest.mark.timeout(300)
def test_database_lost_and_back(database_server: PgCluster, tmp_path: Path, envs_dir: Path) -> None:
    migrated = subprocess.run([sys.executable, "-m", "skiff", "migrate", "--database-url",
                               database_server.url], capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    server = SkiffServer(tmp_path / "home", [TEST_APPS / "hello", APPS / "sleeper"], envs_dir,
                         env={"SKIFF_DATABASE_URL": database_server.url})
    try:
        assert server.http.get("/hello/").status_code == 200
        accepted = []
        for n in range(6):  # ~1.2 s of work for one instance: most of it still waits
            r = server.http.post("/sleeper/", json={"n": n}, headers=EVENT)
            assert r.status_code == 202, r.text
            accepted.append(r.json()["invocation_id"])

        database_server.stop()
        # a plain app's sync requests need no database: served, their records buffered
        for _ in range(20):
            r = server.http.get("/hello/")
            assert r.status_code == 200, r.text
        # an async accept does: refused, with what to do, and at once after the first
        for _ in range(3):
            r = server.http.post("/sleeper/", json={"n": "lost"}, headers=EVENT)
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert error["code"] == "database_unavailable", error
            assert "reconnects by itself" in error["message"] and "retry" in error["message"]
            assert r.headers["retry-after"] == "1"
        assert server.http.get("/_skiff/api/health").status_code == 200  # haproxy keeps it
        assert server.http.get("/hello/").status_code == 200

        database_server.start()
        def accept_again() -> str | None:
            r = server.http.post("/sleeper/", json={"n": "after"}, headers=EVENT)
            return r.json()["invocation_id"] if r.status_code == 202 else None

        after = server.wait_for(accept_again, "async accepts to work again", timeout=60)
        for inv in [*accepted, after]:
            server.wait_for(lambda inv=inv: server.admin.get(f"/invocations/{inv}").json()
                            .get("status") == "succeeded", f"invocation {inv}", timeout=90)
        # the records of the requests served while the database was away were kept
        server.wait_for(lambda: len(server.admin.get("/apps/hello/invocations").json()) >= 22,
                        "the buffered invocation records")
        output = "\n".join(server.lines)
        assert "is unreachable" in output and "reachable again" in output, output
    finally:
        server.stop()


# -- the mapping, on the shared server (nothing stopped) -------------------------------------
def test_a_failing_statement_is_the_callers_error_not_an_outage(pg_database) -> None:
    """A statement the server cancels (an OperationalError too) reaches the caller as
    itself: only a lost connection is database_unavailable."""
    import psycopg

    with pytest.raises(psycopg.errors.QueryCanceled), pg_database.connection() as conn:
        conn.execute("SET statement_timeout = 10")
        conn.execute("SELECT pg_sleep(1)")
    assert pg_database.outages == 0 and not pg_database.down
    with pg_database.connection() as conn:
        conn.execute("RESET statement_timeout")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_connections_cut_by_the_server_fail_one_call_then_work(pg_database) -> None:
    """The server ends every connection of the pool (as a restart does, while it stays up):
    the call that finds its connection dead gets DatabaseUnavailable, and the pool is
    replaced at once, so the calls after it work without waiting for a retry."""
    from skiff.errors import DatabaseUnavailable

    with pg_database.connection() as conn:
        mine = conn.info.backend_pid
    killer = pg_database.connect()
    try:
        killer.execute("SELECT pg_terminate_backend(%s)", (mine,))
    finally:
        killer.close()
    with pytest.raises(DatabaseUnavailable) as info, pg_database.connection() as conn:
        conn.execute("SELECT 1")
    assert info.value.code == "database_unavailable" and info.value.status == 503
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the recovery thread's new pool
        try:
            with pg_database.connection() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            break
        except DatabaseUnavailable:
            time.sleep(0.05)
    else:
        raise AssertionError("the database did not come back")
    assert pg_database.outages == 1 and not pg_database.down
