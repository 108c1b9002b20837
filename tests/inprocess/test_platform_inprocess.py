"""The platform's own logic (deploy, invoke, scaling, rollback, delete, async)
in this process, behind the real gateway and admin API over httpx's ASGI
transport, with scripted instances instead of processes (tests/inprocess/fakes.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from skiff.cli.client import pack
from skiff.config import Config
from skiff.gateway import Gateway
from skiff.gateway.admin import build_admin
from skiff.server import assemble
from tests.inprocess.fakes import Crash, FakeLauncher, Script, reply

TOKEN = "test-token"


def app_dir(tmp_path: Path, name: str, version: str = "1", scaling: str = "") -> Path:
    d = tmp_path / f"{name}-{version}"
    d.mkdir()
    (d / "skiff.yaml").write_text(
        "apiVersion: skiff.dev/v1\nkind: MicroApp\n"
        f"metadata: {{name: {name}, owner: me@example.com}}\n"
        f"spec:\n  handler: app:handler\n  env: {{VERSION: '{version}'}}\n"
        + (f"  scaling: {{{scaling}}}\n" if scaling else ""))
    (d / "app.py").write_text(f"def handler(event, context):\n    return {version!r}\n")
    return d


@contextlib.asynccontextmanager
async def platform(tmp_path: Path, scripts: dict[str, Script]
                   ) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, FakeLauncher]]:
    fake = FakeLauncher(scripts=scripts)

    def launcher(hooks):  # noqa: ANN001, ANN202 - the root passes the platform's hooks
        fake.hooks = hooks
        return fake

    config = Config(home=tmp_path / "home", port=0, tick_seconds=0.05,
                    uid_registry=tmp_path / "uids.db")
    plat = assemble(config, launcher=launcher)
    gateway = Gateway(plat, build_admin(plat, TOKEN))
    await plat.start()
    transport = httpx.ASGITransport(app=gateway)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http, \
                httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1/_skiff/api",
                                  headers={"authorization": f"Bearer {TOKEN}"}) as admin:
            yield http, admin, fake
    finally:
        await plat.stop()


async def deploy(admin: httpx.AsyncClient, d: Path) -> dict:
    r = await admin.post("/apps", content=pack(d), headers={"content-type": "application/gzip"})
    assert r.status_code == 201, r.text
    return r.json()


def by_revision(msg, inst):  # noqa: ANN001, ANN201
    return reply(msg, inst.revision)


def test_deploy_invoke_rollback_delete(tmp_path: Path) -> None:
    """Each revision serves once it is deployed; a rollback serves the older one again;
    a delete stops routing to the app and forgets it (its archive answers 410)."""
    async def run() -> None:
        async with platform(tmp_path, {"hello": Script(by_revision)}) as (http, admin, fake):
            one = await deploy(admin, app_dir(tmp_path, "hello", "1"))
            assert one["changed"] and one["kind"] == "lambda"
            assert (await http.get("/hello/")).text == one["revision"]
            two = await deploy(admin, app_dir(tmp_path, "hello", "2"))
            assert two["revision"] != one["revision"]
            assert (await http.get("/hello/")).text == two["revision"]
            back = await admin.post("/apps/hello/rollback", json={})
            assert back.status_code == 200 and back.json()["revision"] == one["revision"]
            assert (await http.get("/hello/")).text == one["revision"]
            assert (one["revision"] in {rev for app, rev in fake.bound if app == "hello"})
            records = (await admin.get("/apps/hello/invocations")).json()
            assert [r["status"] for r in records] == [200, 200, 200]
            gone = await admin.delete("/apps/hello")
            assert gone.status_code == 200 and gone.json()["deleted"] == "hello"
            after = await http.get("/hello/")  # archived first: it says how to restore it
            assert after.status_code == 410 and after.json()["error"]["code"] == "app_archived"
            assert not fake.live  # its instances were stopped
    asyncio.run(run())


def test_429_at_max_instances(tmp_path: Path) -> None:
    """With maxInstances 1 busy and maxQueue 0, the next request is refused with 429."""
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(msg, inst):  # noqa: ANN001, ANN202
        started.set()
        await release.wait()
        return reply(msg, "done")

    async def run() -> None:
        async with platform(tmp_path, {"busy": Script(slow)}) as (http, admin, _):
            await deploy(admin, app_dir(tmp_path, "busy", scaling="maxInstances: 1, maxQueue: 0"))
            first = asyncio.ensure_future(http.get("/busy/"))
            await started.wait()
            second = await http.get("/busy/")
            assert second.status_code == 429
            assert second.json()["error"]["code"] == "too_many_requests"
            assert second.headers["retry-after"] == "1"
            release.set()
            assert (await first).text == "done"
            app = (await admin.get("/apps/busy")).json()
            assert app["throttled"] == 1
    asyncio.run(run())


def test_a_crashing_instance_is_a_502_and_the_next_request_is_served(tmp_path: Path) -> None:
    """The crash is answered 502 instance_crashed, recorded and logged by the platform's
    hooks; a new instance serves the next request."""
    crash = {"next": True}

    def flaky(msg, inst):  # noqa: ANN001, ANN202
        inst.log(msg.id, "about to answer")
        if crash.pop("next", False):
            raise Crash
        return reply(msg, "fine")

    async def run() -> None:
        async with platform(tmp_path, {"flaky": Script(flaky)}) as (http, admin, _):
            await deploy(admin, app_dir(tmp_path, "flaky"))
            r = await http.get("/flaky/")
            assert r.status_code == 502 and r.json()["error"]["code"] == "instance_crashed"
            assert (await http.get("/flaky/")).text == "fine"
            records = (await admin.get("/apps/flaky/invocations")).json()
            assert sorted(r["status"] for r in records) == [200, 502]
            logs = (await admin.get("/apps/flaky/logs")).json()
            lines = [(entry["stream"], entry["line"]) for entry in logs]
            assert ("stdout", "about to answer") in lines
            assert any(s == "platform" and "exited while handling" in line for s, line in lines)
            crashed = next(e for e in logs if e["line"] == "about to answer")
            assert crashed["request_id"] == r.headers["x-skiff-request-id"]
    asyncio.run(run())


def test_async_invocation_is_accepted_then_run(tmp_path: Path) -> None:
    """X-Skiff-Invocation-Type: Event is answered 202 at once; the event plane runs it
    through the same invoke path, and its status says so."""
    async def run() -> None:
        async with platform(tmp_path, {"later": Script(lambda msg, inst: reply(msg, "ok"))}) \
                as (http, admin, _):
            await deploy(admin, app_dir(tmp_path, "later"))
            r = await http.post("/later/", content=b"{}",
                                headers={"x-skiff-invocation-type": "Event"})
            assert r.status_code == 202
            inv = r.json()["invocation_id"]
            for _ in range(200):
                status = (await admin.get(f"/invocations/{inv}")).json()
                if status["status"] == "succeeded":
                    break
                await asyncio.sleep(0.05)
            assert status["status"] == "succeeded", status
            records = (await admin.get("/apps/later/invocations")).json()
            assert [r["trigger"] for r in records] == ["event"]
    asyncio.run(run())
