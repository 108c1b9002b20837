"""A node of a cluster against what reaches it from elsewhere: an app posing as another
node (X-Skiff-Node), and registry rows another writer of the shared database left
(a bundle that expands a thousandfold, one with links out of its directory, a
revision named like a path). The node refuses each, logs it for the app, keeps
serving the revision it served, and a neighbour app is served throughout.

One node for the module, on a PostgreSQL database of its own (skipped without one,
failing in CI); the rows are written with psycopg, as another node would."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.governance.secrets import generate_master_key
from tests.conftest import SkiffServer
from tests.hostile.conftest import APPS, neighbour_watch
from tests.postgres import postgres_url

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")

NODES_APPS = Path(__file__).parent / "nodes_apps"
MAX_APP_BYTES = 4 << 20


class Cluster:
    def __init__(self, url: str, server: SkiffServer) -> None:
        self.url, self.server = url, server

    def as_another_node(self, revision: str, bundle: bytes) -> None:
        """Make ``revision`` (the current manifest, ``bundle`` as its code) poser's
        current one and signal it, as a node's deploy does."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn, conn.transaction():
            manifest, = conn.execute(
                "SELECT r.manifest FROM revisions r JOIN apps a ON a.name = r.app "
                "AND a.revision = r.revision WHERE r.app = 'poser'").fetchone()
            conn.execute("INSERT INTO revisions VALUES ('poser', %s, %s, '/elsewhere', 'env', "
                         "extract(epoch from now())) ON CONFLICT DO NOTHING",
                         (revision, manifest))
            conn.execute("INSERT INTO code_bundles VALUES ('poser', %s, %s) "
                         "ON CONFLICT (app, revision) DO UPDATE SET data = EXCLUDED.data",
                         (revision, bundle))
            self.current = conn.execute("SELECT revision FROM apps WHERE name = 'poser'"
                                        ).fetchone()[0]
            conn.execute("UPDATE apps SET revision = %s WHERE name = 'poser'", (revision,))
            conn.execute("SELECT pg_notify('skiff_registry', 'poser')")

    def put_back(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("UPDATE apps SET revision = %s WHERE name = 'poser'", (self.current,))

    def refused(self, revision: str, why: str) -> str:
        """Wait for the node's line saying it did not serve ``revision``; return it."""
        def line() -> str | None:
            logs = self.server.admin.get("/apps/poser/logs").json()
            return next((e["line"] for e in logs if e["stream"] == "platform"
                         and f"could not serve revision {revision}" in e["line"]), None)
        found = self.server.wait_for(line, f"the refusal of {revision}")
        assert why in found, found
        return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, envs_dir) -> Iterator[Cluster]:
    import subprocess
    import sys

    import psycopg

    base = postgres_url()
    name = f"skiff_hostile_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = base.rsplit("/", 1)[0] + "/" + name
    server = None
    try:
        done = subprocess.run([sys.executable, "-m", "skiff", "migrate", "--database-url", url],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        src = tmp_path_factory.mktemp("nodes-apps")
        shutil.copytree(NODES_APPS, src, dirs_exist_ok=True)
        shutil.copytree(APPS / "neighbour", src / "neighbour")
        server = SkiffServer(tmp_path_factory.mktemp("nodes-home"), [src], envs_dir, env={
            "SKIFF_DATABASE_URL": url, "SKIFF_MASTER_KEY": generate_master_key(),
            "SKIFF_NODE_NAME": "node-1", "SKIFF_MAX_APP_BYTES": str(MAX_APP_BYTES),
            "SKIFF_MAX_APP_FILES": "100"})
        assert server.http.get("/poser/").text == "posed", "\n".join(server.lines)
        yield Cluster(url, server)
    finally:
        if server is not None:
            server.stop()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _still_serving(cluster: Cluster, revision: str) -> None:
    server = cluster.server
    assert server.http.get("/poser/").text == "posed"
    assert server.app("poser")["revision"] == cluster.current
    code = server.home / "revisions" / "poser"
    assert revision == ".." or not (code / revision).exists()
    assert not list(code.glob(".*")), list(code.iterdir())  # no half-unpacked directory
    cluster.put_back()


def test_an_app_cannot_answer_as_another_node(cluster: Cluster) -> None:
    """X-Skiff-Node is the gateway's: an app's own (any case) is dropped, the real one
    is sent once."""
    with neighbour_watch(cluster.server):
        r = cluster.server.http.get("/poser/")
    assert r.text == "posed" and r.headers.get_list("x-skiff-node") == ["node-1"]


def test_a_bundle_that_expands_past_the_limit_is_not_unpacked(cluster: Cluster) -> None:
    """64 MiB of zeros in a bundle of some 64 KB: refused from its headers
    (413 app_too_large), nothing written."""
    bomb = _tar(_file("handler.py", b"def handler(e, c):\n    return 'bomb'\n"),
                _file("zeros.bin", bytes(64 << 20)))
    assert len(bomb) < 1 << 20
    with neighbour_watch(cluster.server):
        cluster.as_another_node("bomb00000001", bomb)
        cluster.refused("bomb00000001", f"over the limit of {MAX_APP_BYTES}")
    _still_serving(cluster, "bomb00000001")


@pytest.mark.parametrize("member", [
    ("link", "/etc/shadow"), ("link", "../../../../admin-token"), ("file", "../../escape.py"),
    ("hardlink", "/etc/shadow")], ids=lambda m: f"{m[0]}:{m[1]}")
def test_a_bundle_with_paths_out_of_its_directory_is_not_unpacked(
        cluster: Cluster, member: tuple[str, str]) -> None:
    """Links and files naming a place outside the revision's directory are refused
    (tarfile's data filter; a leading "/" it strips, which stays inside); the node keeps
    its revision and writes nothing."""
    kind, target = member
    if kind in ("link", "hardlink"):
        info = tarfile.TarInfo("handler.py")
        info.type = tarfile.SYMTYPE if kind == "link" else tarfile.LNKTYPE
        info.linkname = target
        bundle = _tar((info, None))
    else:
        bundle = _tar(_file(target, b"print('escaped')\n"))
    revision = f"{kind}{uuid.uuid4().hex[:8]}"
    with neighbour_watch(cluster.server):
        cluster.as_another_node(revision, bundle)
        cluster.refused(revision, "does not unpack")
    _still_serving(cluster, revision)
    assert not (cluster.server.home / "escape.py").exists()


def test_a_revision_named_like_a_path_is_not_served(cluster: Cluster) -> None:
    """A revision id is a directory name under the app's; one of '..' would unpack over
    the home's other apps."""
    bundle = _tar(_file("handler.py", b"def handler(e, c):\n    return 'moved in'\n"))
    with neighbour_watch(cluster.server):
        cluster.as_another_node("..", bundle)
        cluster.refused("..", "not a directory name")
    assert not (cluster.server.home / "revisions" / "handler.py").exists()
    _still_serving(cluster, "..")
    assert cluster.server.http.get("/_skiff/api/health").json()["status"] == "ok"
