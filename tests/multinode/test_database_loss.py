"""The database lost while a node runs: sync requests to plain apps go on, async
accepts get 503 database_unavailable, nothing accepted before is lost, and the
node resumes by itself when the database is back. On a cluster of the test's own
(stopped and restarted here), not the shared one."""

from __future__ import annotations

import subprocess
import sys
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
