"""Two ``skiff up`` nodes on one PostgreSQL database: an async invocation accepted by
one reports its status from the other (the admin API reads the shared trigger state)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid

import pytest

from tests.conftest import TEST_APPS
from tests.postgres import postgres_url


@pytest.fixture
def pg_url() -> str:
    """A fresh database, migrated; dropped afterwards."""
    import psycopg

    base = postgres_url()
    name = f"skiff_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = base.rsplit("/", 1)[0] + "/" + name
    done = subprocess.run([sys.executable, "-m", "skiff", "migrate", "--database-url", url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    yield url
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_async_status_reads_the_same_from_either_node(pg_url, start_server, tmp_path):
    """Node one accepts an Event invocation of its app (202); whichever node runs it, node
    two reports it queued or done, and done the same as node one."""
    def node(name: str, *dirs):  # noqa: ANN002, ANN202
        # a uid registry each, as on two hosts (one host's registry refuses a uid that
        # another home holds, and both nodes run the same apps)
        return start_server(*dirs, home=tmp_path / name,
                            env={"SKIFF_DATABASE_URL": pg_url,
                                 "SKIFF_UID_REGISTRY": str(tmp_path / f"{name}.uids")})

    one = node("one", TEST_APPS / "hello")
    (tmp_path / "two").mkdir()  # the cluster's secrets are sealed with one master key
    shutil.copy(tmp_path / "one" / "master.key", tmp_path / "two" / "master.key")
    two = node("two")
    r = one.http.post("/hello/", json={"n": 1}, headers={"x-skiff-invocation-type": "Event"})
    assert r.status_code == 202, r.text
    inv = r.json()["invocation_id"]
    assert two.admin.get(f"/invocations/{inv}").json()["status"] in ("queued", "succeeded")
    done = one.wait_for(
        lambda: (s := one.admin.get(f"/invocations/{inv}").json())["status"] == "succeeded"
        and s, "the async invocation to succeed")
    assert two.admin.get(f"/invocations/{inv}").json() == done
    missing = two.admin.get("/invocations/nope")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "invocation_not_found")
