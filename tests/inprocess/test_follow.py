"""The follower's reconcile in-process: what "another node" (rows written straight into
the registry, code only as a bundle) deploys, rolls back and deletes, this platform
serves, and a revision it cannot bring up leaves the previous one serving."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from skiff.cli.client import pack
from skiff.config import Config
from skiff.errors import DatabaseUnavailable, DeployError
from skiff.gateway import Gateway
from skiff.gateway.admin import build_admin
from skiff.manifest import content_hash, load_manifest
from skiff.platform import Platform, follow
from skiff.server import assemble
from skiff.store import RevisionRow
from skiff.store.registry import pack_code
from tests.inprocess.fakes import FakeLauncher, Script
from tests.inprocess.test_platform_inprocess import TOKEN, app_dir, by_revision, deploy


@contextlib.asynccontextmanager
async def node(tmp_path: Path, scripts: dict[str, Script]
               ) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, Platform]]:
    fake = FakeLauncher(scripts=scripts)

    def launcher(hooks):  # noqa: ANN001, ANN202
        fake.hooks = hooks
        return fake

    config = Config(home=tmp_path / "home", port=0, tick_seconds=0.05,
                    uid_registry=tmp_path / "uids.db", node_name="node-a")
    plat = assemble(config, launcher=launcher)
    gateway = Gateway(plat, build_admin(plat, TOKEN))
    await plat.start()
    transport = httpx.ASGITransport(app=gateway)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http, \
                httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1/_skiff/api",
                                  headers={"authorization": f"Bearer {TOKEN}"}) as admin:
            yield http, admin, plat
    finally:
        await plat.stop()


def elsewhere(plat: Platform, src: Path, *, bundle: bytes | None = None) -> str:
    """What another node's deploy leaves in the shared registry: the revision (its code
    on that node's disk), its bundle, and it current. Returns the revision."""
    store = plat._p.store
    manifest = load_manifest(src / "skiff.yaml")
    digest = content_hash(src, manifest)
    stored = manifest.to_dict()
    stored["spec"]["kind"] = "lambda"  # its trial said so, there
    store.put_revision(RevisionRow(manifest.name, digest, stored,
                                   f"/other-node/revisions/{manifest.name}/{digest}", "env",
                                   time.time()))
    store.put_bundle(manifest.name, digest, pack_code(src) if bundle is None else bundle)
    store.set_current(manifest.name, digest)
    return digest


async def platform_lines(admin: httpx.AsyncClient, app: str) -> list[str]:
    return [e["line"] for e in (await admin.get(f"/apps/{app}/logs")).json()
            if e["stream"] == "platform"]


def test_follows_a_deploy_a_rollback_and_a_delete_made_elsewhere(tmp_path: Path) -> None:
    """A revision made current elsewhere is unpacked into this home (compiled) and served;
    a rollback there switches back here; a delete there stops it here and removes its
    code from this home."""
    async def run() -> None:
        async with node(tmp_path, {"hello": Script(by_revision)}) as (http, admin, plat):
            one = (await deploy(admin, app_dir(tmp_path, "hello", "1")))["revision"]
            follower = plat._p.follower
            two = elsewhere(plat, app_dir(tmp_path, "hello", "2"))
            await follower.reconcile(["hello"])
            assert (await http.get("/hello/")).text == two
            code = plat.config.home / "revisions" / "hello" / two
            assert (code / "app.py").is_file() and list((code / "__pycache__").glob("*.pyc"))
            assert any(f"revision {two} (lambda) served here" in line
                       for line in await platform_lines(admin, "hello"))

            plat._p.store.set_current("hello", one)  # a rollback there
            await follower.reconcile(["hello"])
            assert (await http.get("/hello/")).text == one

            await follower.reconcile(["hello"])  # nothing changed: nothing to do
            assert (await http.get("/hello/")).text == one

            plat._p.store.delete_app("hello")  # a delete there
            plat._p.store.release_uid("hello")
            await follower.reconcile()  # everything: as after a LISTEN
            gone = await http.get("/hello/")
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "app_not_found"
            assert not (plat.config.home / "revisions" / "hello").exists()
    asyncio.run(run())


def test_a_revision_that_cannot_come_up_here_leaves_the_previous_serving(
        tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """A bundle that does not unpack, an environment that does not build, or a revision
    named like a path is logged for the app, and the revision served before keeps
    serving; the follower tries again by itself (the package index came back)."""
    async def run() -> None:
        async with node(tmp_path, {"hello": Script(by_revision)}) as (http, admin, plat):
            one = (await deploy(admin, app_dir(tmp_path, "hello", "1")))["revision"]
            follower = plat._p.follower
            bad = elsewhere(plat, app_dir(tmp_path, "hello", "2"), bundle=b"not a tar")
            await follower.reconcile(["hello"])
            assert (await http.get("/hello/")).text == one
            lines = await platform_lines(admin, "hello")
            assert any(f"could not serve revision {bad}" in line and "does not unpack" in line
                       and f"revision {one} keeps serving here" in line for line in lines), lines
            assert not (plat.config.home / "revisions" / "hello" / bad).exists()

            envs = plat._p.deployer._envs
            resolve, index = envs.resolve, {"away": True}

            def flaky(code_dir):  # noqa: ANN001, ANN202
                if index["away"]:
                    raise DeployError("pip install -r requirements.txt failed: the package "
                                      "index is unreachable", code="env_build_failed")
                return resolve(code_dir)

            monkeypatch.setattr(envs, "resolve", flaky)
            monkeypatch.setattr(follow, "RETRY_FIRST", 0.05)
            three = elsewhere(plat, app_dir(tmp_path, "hello", "3"))
            await follower.reconcile(["hello"])
            assert (await http.get("/hello/")).text == one
            assert any(f"could not serve revision {three}" in line and "pip install" in line
                       and "trying again in 0.05 s" in line
                       for line in await platform_lines(admin, "hello"))
            index["away"] = False  # back: the follower's own retry brings the revision up
            for _ in range(400):
                if (await http.get("/hello/")).text == three:
                    break
                await asyncio.sleep(0.025)
            assert (await http.get("/hello/")).text == three

            # a row naming a path, not a revision (a registry written by someone else)
            store = plat._p.store
            row = store.revision("hello", three)
            store.put_revision(RevisionRow("hello", "..", row.manifest, row.code_dir, "env",
                                           time.time()))
            store.put_bundle("hello", "..", pack_code(app_dir(tmp_path, "hello", "4")))
            store.set_current("hello", "..")
            await follower.reconcile(["hello"])
            assert (await http.get("/hello/")).text == three
            assert any("could not serve revision .." in line and "not a directory name" in line
                       for line in await platform_lines(admin, "hello"))
            assert not (plat.config.home / "app.py").exists()
    asyncio.run(run())


def test_a_signal_from_the_registry_thread_reconciles(tmp_path: Path) -> None:
    """The registry's listener thread says an app changed: the follower reconciles it on
    the event loop."""
    async def run() -> None:
        async with node(tmp_path, {"hello": Script(by_revision)}) as (http, admin, plat):
            await deploy(admin, app_dir(tmp_path, "hello", "1"))
            two = elsewhere(plat, app_dir(tmp_path, "hello", "2"))
            threading.Thread(target=plat._p.follower._heard, args=("hello",)).start()
            for _ in range(400):
                if (await http.get("/hello/")).text == two:
                    break
                await asyncio.sleep(0.025)
            assert (await http.get("/hello/")).text == two
    asyncio.run(run())


def test_restore_unpacks_what_this_home_does_not_have(tmp_path: Path) -> None:
    """A revision stored before bundles were gets one at the next start (from this
    node's disk); a node whose home lost (or never had) the code serves it at start
    from that bundle."""
    async def run() -> None:
        async with node(tmp_path, {"hello": Script(by_revision)}) as (_, admin, plat):
            one = (await deploy(admin, app_dir(tmp_path, "hello", "1")))["revision"]
            assert plat._p.store.has_bundle("hello", one)
        with sqlite3.connect(tmp_path / "home" / "skiff.db") as db:  # as an older Skiff left it
            db.execute("DELETE FROM code_bundles")
        async with node(tmp_path, {"hello": Script(by_revision)}) as (http, _, plat):
            assert (await http.get("/hello/")).text == one
            assert plat._p.store.has_bundle("hello", one)
        shutil.rmtree(tmp_path / "home" / "revisions")
        async with node(tmp_path, {"hello": Script(by_revision)}) as (http, _, plat):
            assert (await http.get("/hello/")).text == one
            assert (plat.config.home / "revisions" / "hello" / one / "app.py").is_file()
    asyncio.run(run())


def test_the_node_name_is_on_health_and_on_data_plane_responses(tmp_path: Path) -> None:
    """/_skiff/api/health names the node in its body and its X-Skiff-Node header, and so
    does every data-plane answer (an app's, an error); an app cannot set that header."""
    from skiff import ipc as p

    def spoof(msg, inst):  # noqa: ANN001, ANN202
        return p.Response(id=msg.id, status=200, headers=[("x-skiff-node", "evil")], body=b"x")

    async def run() -> None:
        async with node(tmp_path, {"spoof": Script(spoof)}) as (http, admin, _):
            health = await admin.get("/health")
            assert health.json()["node"] == "node-a" and health.headers["x-skiff-node"] == "node-a"
            await deploy(admin, app_dir(tmp_path, "spoof"))
            r = await http.get("/spoof/")
            assert r.status_code == 200 and r.headers.get_list("x-skiff-node") == ["node-a"]
            missing = await http.get("/nothing-here/")
            assert missing.status_code == 404 and missing.headers["x-skiff-node"] == "node-a"
    asyncio.run(run())


def test_a_grant_revoked_elsewhere_withdraws_the_route_here(tmp_path: Path) -> None:
    """An operator revokes a route grant through another node: this node stops serving
    the route too (as a revoke on this node does), and the app keeps its own routes."""
    async def run() -> None:
        scripts = {"front": Script(by_revision), "hello": Script(by_revision)}
        async with node(tmp_path, scripts) as (http, admin, plat):
            await deploy(admin, app_dir(tmp_path, "hello"))
            assert (await admin.put("/route-grants", json={"app": "front", "path": "/"})
                    ).status_code in (200, 201, 204)
            front = app_dir(tmp_path, "front")
            (front / "skiff.yaml").write_text((front / "skiff.yaml").read_text()
                                              + "  routes: [{path: /}]\n")
            rev = (await deploy(admin, front))["revision"]
            assert (await http.get("/no-app-here/x")).text == rev
            assert plat._p.store.revoke_route("front", None, "")  # on another node
            await plat._p.follower.reconcile(["front"])
            assert (await http.get("/no-app-here/x")).status_code == 404
            assert (await http.get("/front/")).text == rev
            assert (await http.get("/hello/")).status_code == 200
    asyncio.run(run())


def test_a_deploy_whose_bundle_cannot_be_stored_changes_nothing(tmp_path: Path,
                                                                monkeypatch) -> None:  # noqa: ANN001
    """The bundle goes in before the revision is current: when it cannot (the database
    is away), the deploy fails, the revision is not current anywhere, the previous one
    serves, and its trial instance is gone."""
    async def run() -> None:
        async with node(tmp_path, {"hello": Script(by_revision)}) as (http, admin, plat):
            one = (await deploy(admin, app_dir(tmp_path, "hello", "1")))["revision"]
            live = len(plat._p.launcher.live)

            def away(*args):  # noqa: ANN002, ANN202
                raise DatabaseUnavailable("cannot reach the database")

            monkeypatch.setattr(plat._p.store, "put_bundle", away)
            r = await admin.post("/apps", content=pack(app_dir(tmp_path, "hello", "2")),
                                 headers={"content-type": "application/gzip"})
            assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable"
            assert plat._p.store.current("hello") == one
            assert (await http.get("/hello/")).text == one
            await asyncio.sleep(0)  # the killed trial's exit is handled on the next turn
            assert len(plat._p.launcher.live) == live
    asyncio.run(run())


def test_a_reconcile_the_database_interrupts_is_tried_again(tmp_path: Path,
                                                            monkeypatch) -> None:  # noqa: ANN001
    """The registry fails while the follower reads it (a failover): the follower logs
    it and reconciles everything again later, without waiting for another signal."""
    async def run() -> None:
        async with node(tmp_path, {"hello": Script(by_revision)}) as (http, admin, plat):
            await deploy(admin, app_dir(tmp_path, "hello", "1"))
            two = elsewhere(plat, app_dir(tmp_path, "hello", "2"))
            store, failures = plat._p.store, []
            current = store.current

            def failing_once(name):  # noqa: ANN001, ANN202
                if not failures:
                    failures.append(name)
                    raise DatabaseUnavailable("the database is restarting")
                return current(name)

            monkeypatch.setattr(store, "current", failing_once)
            monkeypatch.setattr(follow, "RETRY_FIRST", 0.05)
            plat._p.follower._heard("hello")
            for _ in range(400):
                if (await http.get("/hello/")).text == two:
                    break
                await asyncio.sleep(0.025)
            assert failures == ["hello"] and (await http.get("/hello/")).text == two
    asyncio.run(run())
