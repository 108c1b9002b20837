"""Two `skiff up` nodes on one PostgreSQL database, each with its own home and port:
what one deploys, rolls back and deletes, the other serves (or stops serving), and a
node started later with an empty home serves what was deployed before it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.cli.client import pack
from skiff.governance.secrets import generate_master_key
from tests.conftest import SkiffServer
from tests.postgres import postgres_url


@pytest.fixture
def cluster_url() -> Iterator[str]:
    """A database of its own (NOTIFY channels are per database), migrated."""
    import psycopg

    base = postgres_url()
    name = f"skiff_nodes_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        done = subprocess.run([sys.executable, "-m", "skiff", "migrate", "--database-url", url],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        yield url
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def version_dir(tmp_path: Path, version: str) -> Path:
    d = tmp_path / f"greeter-{version}"
    d.mkdir()
    (d / "skiff.yaml").write_text(
        "apiVersion: skiff.dev/v1\nkind: MicroApp\n"
        "metadata: {name: greeter, owner: tests@example.com}\n"
        f"spec:\n  handler: app:handler\n  env: {{VERSION: '{version}'}}\n"
        "  resources: {memoryMB: 128, timeout: 5}\n")
    (d / "app.py").write_text(
        "import os\n\n\ndef handler(event, context):\n"
        "    return {'version': os.environ['VERSION']}\n")
    return d


def version_on(node: SkiffServer) -> str | None:
    r = node.http.get("/greeter/")
    return r.json()["version"] if r.status_code == 200 else None


def test_a_second_node_serves_what_the_first_deploys_rolls_back_and_deletes(
        cluster_url: str, envs_dir: Path, tmp_path: Path) -> None:
    """Node 2 starts after the deploy with an empty home and serves v1 from its bundle;
    then follows node 1's deploy of v2, its rollback to v1 and its delete."""
    # what every node of one database shares: the database and the secrets' master key
    shared = {"SKIFF_DATABASE_URL": cluster_url, "SKIFF_MASTER_KEY": generate_master_key()}
    nodes: list[SkiffServer] = []
    try:
        one = SkiffServer(tmp_path / "home-1", [], envs_dir,
                          env={**shared, "SKIFF_NODE_NAME": "node-1"})
        nodes.append(one)
        r = one.admin.post("/apps", content=pack(version_dir(tmp_path, "1")),
                           headers={"content-type": "application/gzip"})
        assert r.status_code == 201, r.text
        assert version_on(one) == "1"

        # another host, as far as uids go: its own uid registry (the app keeps its uid);
        # its database and name by flags, as an operator starts one
        two = SkiffServer(tmp_path / "home-2", [], envs_dir, env={
            "SKIFF_MASTER_KEY": shared["SKIFF_MASTER_KEY"],
            "SKIFF_UID_REGISTRY": str(tmp_path / "host-2-uids.db")},
            args=["--database-url", cluster_url, "--node-name", "node-2"])
        nodes.append(two)
        assert any("node node-2" in line for line in two.lines), two.lines
        assert "ready: 1 app(s)" in "\n".join(two.lines)
        served = two.http.get("/greeter/")
        assert served.status_code == 200, "\n".join(two.lines)
        assert served.json() == {"version": "1"} and served.headers["x-skiff-node"] == "node-2"
        health = [n.http.get("/_skiff/api/health") for n in (one, two)]
        assert [h.json()["node"] for h in health] == ["node-1", "node-2"]
        assert [h.headers["x-skiff-node"] for h in health] == ["node-1", "node-2"]

        r = one.admin.post("/apps", content=pack(version_dir(tmp_path, "2")),
                           headers={"content-type": "application/gzip"})
        assert r.status_code == 201, r.text
        v2 = r.json()["revision"]
        two.wait_for(lambda: version_on(two) == "2", "node 2 to serve v2")
        assert two.app("greeter")["revision"] == v2
        assert (two.home / "revisions" / "greeter" / v2 / "app.py").is_file()

        r = one.admin.post("/apps/greeter/rollback", json={})
        assert r.status_code == 200, r.text
        two.wait_for(lambda: version_on(two) == "1", "node 2 to serve v1 again")

        assert one.admin.delete("/apps/greeter").status_code == 200
        # archived by node 1 (skiff rm archives first): node 2 says so too, soon
        two.wait_for(lambda: two.http.get("/greeter/").status_code == 410,
                     "node 2 to stop serving the app and answer that it is archived")
        gone = two.http.get("/greeter/").json()
        assert gone["error"]["code"] == "app_archived"
        two.wait_for(lambda: not (two.home / "revisions" / "greeter").exists(),
                     "node 2 to remove its copy of the code")
        for node in nodes:  # both alive, and neither logged a failure to follow
            assert node.http.get("/_skiff/api/health").json()["status"] == "ok"
        assert not [line for line in two.lines if "Traceback" in line], two.lines
    finally:
        for node in nodes:
            node.stop()
