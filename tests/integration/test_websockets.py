"""WebSockets through the real gateway, with a real client (the ``websockets``
package): echo of text and binary, subprotocols, close codes both ways, the
refusals (a non-ASGI app, an unknown app, an app that refuses, the per-app
limit) as HTTP answers with a code, the idle timeout, and the hostile cases: an
app that accepts then hangs, an app that never reads under a client's flood, a
100 MiB message, an instance crash (1011 on each of its sockets), one
connection killed while another on the same instance goes on.

One server for the module; its idle timeout is short (IDLE) so the idle cases
end soon, and the apps say what they saw through their own HTTP routes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import SkiffServer

APPS = Path(__file__).parent / "websocket_apps"
IDLE = 2  # SKIFF_WS_IDLE_TIMEOUT of this server, seconds
LIMIT = 4  # SKIFF_WS_MAX_CONNECTIONS


@pytest.fixture(scope="module")
def server(tmp_path_factory, envs_dir):
    src = tmp_path_factory.mktemp("websocket-apps")
    shutil.copytree(APPS, src, dirs_exist_ok=True)
    s = SkiffServer(tmp_path_factory.mktemp("home"), [src], envs_dir,
                    env={"SKIFF_WS_IDLE_TIMEOUT": str(IDLE),
                         "SKIFF_WS_MAX_CONNECTIONS": str(LIMIT)})
    yield s
    s.stop()


def ws_url(server: SkiffServer, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def seen(server: SkiffServer) -> dict:
    return server.http.get("/wsecho/state").json()


def logged(server: SkiffServer, text: str) -> None:
    server.wait_for(lambda: any(text in r["line"] for r in server.admin.get(
        "/apps/wsecho/logs", params={"tail": 500}).json()), f"a log line with {text}")


def gateway_rss_mib(server: SkiffServer) -> float:
    with open(f"/proc/{server.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def closed_with(ws) -> tuple[int, str]:  # noqa: ANN001
    """Read until the server closes; its close frame's code and reason."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, "the connection ended without a close frame"
        return exc.rcvd.code, exc.rcvd.reason


async def refusal(server: SkiffServer, path: str) -> tuple[int, dict, dict]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(ws_url(server, path)):
            pass
    resp = info.value.response
    return resp.status_code, dict(resp.headers), json.loads(bytes(resp.body))


def test_text_and_binary_echo_with_subprotocol_and_app_headers(server):
    async def go() -> None:
        async with connect(ws_url(server, "/wsecho/echo"), subprotocols=["chat", "v2"]) as ws:
            assert ws.subprotocol == "chat"  # the app's pick of the client's offer
            assert ws.response.headers["x-app"] == "wsecho"
            assert "x-skiff-node" in ws.response.headers
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xffbinary")
            assert await ws.recv() == b"\x00\xffbinary"
            big = os.urandom(512 * 1024)  # over one credit window: passes whole
            await ws.send(big)
            assert await ws.recv() == big

    asyncio.run(go())


def test_close_codes_and_reasons_pass_both_ways(server):
    async def go() -> None:
        async with connect(ws_url(server, "/wsecho/echo")) as ws:
            await ws.send("close 4002 done here")
            assert await closed_with(ws) == (4002, "done here")
        before = len(seen(server)["disconnects"])
        async with connect(ws_url(server, "/wsecho/echo")) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            await ws.close(4001, "bye")
        return before

    before = asyncio.run(go())
    got = server.wait_for(lambda: seen(server)["disconnects"][before:], "the app's disconnect")
    assert got == [[4001, "bye"]]


def test_refusals_are_http_answers_with_a_stable_code(server):
    async def go() -> None:
        status, headers, body = await refusal(server, "/wslambda/")
        assert status == 400
        assert body["error"]["code"] == "websocket_not_supported"
        assert "ASGI" in body["error"]["message"]
        assert headers["x-skiff-request-id"] == body["error"]["request_id"]
        status, _, body = await refusal(server, "/nowhere/")
        assert (status, body["error"]["code"]) == (404, "app_not_found")
        status, _, body = await refusal(server, "/wsecho/refuse")
        assert (status, body["error"]["code"]) == (403, "websocket_refused")
        assert "4003" in body["error"]["message"]

    asyncio.run(go())


def test_an_app_that_never_answers_the_handshake_times_out_and_one_that_raises_is_a_500(
        server):
    async def go() -> None:
        status, _, body = await refusal(server, "/wsslow/")  # its timeout is 1 s
        assert (status, body["error"]["code"]) == (504, "timeout")
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(server, "/wsslow/raise")):
                pass
        resp = info.value.response
        assert resp.status_code == 500
        assert bytes(resp.body) == b"Internal Server Error"  # as uvicorn answers; no app words

    asyncio.run(go())


def test_the_per_app_connection_limit_refuses_with_429(server):
    async def go() -> None:
        held = [await connect(ws_url(server, "/wsecho/echo")) for _ in range(LIMIT)]
        try:
            status, headers, body = await refusal(server, "/wsecho/echo")
            assert (status, body["error"]["code"]) == (429, "websocket_limit")
            assert headers["retry-after"] == "1"
            assert "SKIFF_WS_MAX_CONNECTIONS" in body["error"]["message"]
            await held.pop().close()
            for _ in range(100):  # the gateway counts it closed once its pump has ended
                try:
                    ws = await connect(ws_url(server, "/wsecho/echo"))
                    break
                except InvalidStatus:
                    await asyncio.sleep(0.05)
            async with ws:  # a place is free again
                await ws.send("in")
                assert await ws.recv() == "in"
        finally:
            for ws in held:
                await ws.close()

    asyncio.run(go())


def test_killing_one_connection_fails_nothing_else_on_its_instance(server):
    async def go() -> None:
        before = len(seen(server)["disconnects"])
        async with connect(ws_url(server, "/wsecho/echo")) as a, \
                connect(ws_url(server, "/wsecho/echo")) as b:
            await a.send("pid")
            await b.send("pid")
            pid = await a.recv()
            assert await b.recv() == pid  # one instance serves both
            a.transport.abort()  # the client dies: no close frame
            await asyncio.to_thread(  # off the loop: the abort completes on it
                server.wait_for, lambda: len(seen(server)["disconnects"]) > before,
                "the app to see the lost connection")
            for i in range(3):
                await b.send(f"still {i}")
                assert await b.recv() == f"still {i}"
            assert server.http.get("/wsecho/state").status_code == 200
            await b.send("pid")
            assert await b.recv() == pid

    asyncio.run(go())


def test_an_app_that_accepts_then_hangs_is_closed_when_idle(server):
    async def go() -> None:
        async with connect(ws_url(server, "/wsecho/hang")) as ws:
            assert await closed_with(ws) == (1001, "idle timeout")

    asyncio.run(go())
    logged(server, "SKIFF_WS_IDLE_TIMEOUT")


def test_an_app_that_never_reads_holds_back_a_flooding_client(server):
    """The client's sends stall: the gateway reads the next message only once the
    instance had credit for the last, and the app never takes one."""
    chunk = os.urandom(64 * 1024)  # incompressible: the bytes on the wire are these
    flood = 64 << 20

    async def go() -> tuple[int, tuple[int, str]]:
        sent = 0
        async with connect(ws_url(server, "/wsecho/noread"), compression=None) as ws:
            try:
                while sent < flood:
                    await asyncio.wait_for(ws.send(chunk), 1.0)
                    sent += len(chunk)
            except TimeoutError:
                pass  # stalled: nothing takes more
            return sent, await closed_with(ws)

    rss = gateway_rss_mib(server)
    sent, close = asyncio.run(go())
    # what was sent is in the kernel's buffers, one window in the instance, one
    # message in the gateway: never the flood
    assert sent < flood
    assert gateway_rss_mib(server) - rss < 24
    assert close == (1001, "idle timeout")


def test_messages_over_the_size_limit_are_refused_both_ways(server):
    async def go() -> None:
        async with connect(ws_url(server, "/wsecho/big")) as ws:  # the app sends 100 MiB
            assert (await closed_with(ws))[0] == 1009
        async with connect(ws_url(server, "/wsecho/echo"), compression=None) as ws:
            await ws.send(os.urandom(2 << 20))  # over SKIFF_WS_MAX_MESSAGE_BYTES (1 MiB)
            assert (await closed_with(ws))[0] == 1009

    rss = gateway_rss_mib(server)
    asyncio.run(go())
    assert gateway_rss_mib(server) - rss < 24  # the 100 MiB never reached the gateway
    logged(server, "SKIFF_WS_MAX_MESSAGE_BYTES")


def test_an_instance_crash_closes_each_of_its_sockets_with_1011(server):
    async def go() -> None:
        async with connect(ws_url(server, "/wscrash/")) as a, \
                connect(ws_url(server, "/wscrash/")) as b:
            await b.send("up")
            assert await b.recv() == "up"
            await a.send("crash")
            assert (await closed_with(a))[0] == 1011
            assert (await closed_with(b))[0] == 1011
        async with connect(ws_url(server, "/wscrash/")) as c:  # a new instance serves
            await c.send("again")
            assert await c.recv() == "again"

    asyncio.run(go())
    records = server.admin.get("/apps/wscrash/invocations", params={"limit": 20}).json()
    crashed = [r for r in records if r["error"] == "instance_crashed"]
    assert len(crashed) == 2 and all(r["trigger"] == "websocket" for r in crashed)


def test_closed_connections_give_their_instance_slots_back(server):
    """The hanging app's call was cancelled once its connection was closed (the
    grace after the close), and every connection's record is written."""
    server.wait_for(lambda: seen(server)["cancelled"] >= 2, "the hanging calls to be cancelled")
    records = server.admin.get("/apps/wsecho/invocations", params={"limit": 100}).json()
    assert {"websocket_idle_timeout"} <= {r["error"] for r in records}
    assert all(r["trigger"] == "websocket" for r in records if r["status"] == 101)


def test_an_instance_that_breaks_the_frame_protocol_harms_no_other_app(server):
    """Frames written past the runtime: a message over the limit closes only its
    connection (1009); forged ids are dropped; a flood past the credit window
    stops the instance (1011 on its sockets), and other apps are served throughout."""
    async def go() -> None:
        async with connect(ws_url(server, "/wsliar/echo")) as other:
            await other.send("before")
            assert await other.recv() == "before"
            async with connect(ws_url(server, "/wsliar/raw-big")) as ws:
                assert (await closed_with(ws))[0] == 1009
            async with connect(ws_url(server, "/wsliar/forged")) as ws:
                assert await ws.recv() == "after forging"
            await other.send("still")  # the same instance goes on
            assert await other.recv() == "still"
            # a client that reads nothing meanwhile: the gateway's unpassed bytes grow
            async with connect(ws_url(server, "/wsliar/raw-flood"), max_queue=1,
                               compression=None) as ws:
                await asyncio.to_thread(server.wait_for, lambda: any(
                    "window" in line for line in server.lines), "the instance to be stopped")
                assert (await closed_with(ws))[0] == 1011
            assert (await closed_with(other))[0] == 1011
        async with connect(ws_url(server, "/wsecho/echo")) as ws:
            await ws.send("neighbour")
            assert await ws.recv() == "neighbour"

    asyncio.run(go())
    records = server.admin.get("/apps/wsliar/invocations", params={"limit": 20}).json()
    assert {"instance_crashed"} <= {r["error"] for r in records}


def test_a_fastapi_websocket_route_runs_unchanged(server):
    """Path and query parameters, JSON messages, and WebSocketDisconnect with the
    client's code, through FastAPI's own WebSocket class."""
    async def go() -> None:
        async with connect(ws_url(server, "/wsfastapi/rooms/lobby?name=ada")) as ws:
            await ws.send(json.dumps({"hello": [1, 2]}))
            assert json.loads(await ws.recv()) == {"room": "lobby", "from": "ada",
                                                   "said": {"hello": [1, 2]}}
            await ws.close(4005)

    asyncio.run(go())
    server.wait_for(lambda: server.http.get("/wsfastapi/left").json() == [4005],
                    "FastAPI to see the client's close code")
