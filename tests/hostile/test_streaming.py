"""Streamed responses through the real gateway: SSE and WSGI generators arrive as
the app sends them; the size cap, the idle limit and a client going away cut a
stream and cancel it inside the instance, and fail nothing else on that instance;
background tasks run after the response. Hostile: an instance that sends stream
frames for requests it is not streaming, past their end, beyond its window or
twice is stopped whole, a neighbour app served throughout.

The apps coordinate with the tests through their own state (a request releases
a waiting one), never the clock. Needs root (as CI runs)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import SkiffServer
from tests.hostile.conftest import neighbour_watch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")

APPS = Path(__file__).parent / "streaming_apps"
IDLE = 3  # SKIFF_STREAM_IDLE_TIMEOUT of this server; the SSE app pings more often


@pytest.fixture(scope="module")
def server(tmp_path_factory, envs_dir):
    src = tmp_path_factory.mktemp("streaming-apps")
    shutil.copytree(APPS, src, dirs_exist_ok=True)
    s = SkiffServer(tmp_path_factory.mktemp("home"), [src], envs_dir,
                    env={"SKIFF_STREAM_IDLE_TIMEOUT": str(IDLE)})
    yield s
    s.stop()


def state(server: SkiffServer) -> dict:
    return server.http.get("/sse/state").json()


def records(server: SkiffServer, app: str) -> list[dict]:
    return server.admin.get(f"/apps/{app}/invocations", params={"limit": 200}).json()


def test_sse_events_arrive_as_the_app_sends_them(server):
    """The first event is read before the app sends the last one: the app sends
    the last only once the test, having read the first, releases it."""
    with neighbour_watch(server), httpx.Client(base_url=server.url, timeout=30) as client:
        with client.stream("GET", "/sse/events") as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"] == "text/event-stream"
            assert "content-length" not in resp.headers
            assert resp.headers["transfer-encoding"] == "chunked"
            lines = resp.iter_lines()
            assert next(lines) == "data: first"
            assert server.http.get("/sse/release").status_code == 200
            rest = [line for line in lines if line]
        assert rest[-1] == "data: last", rest
        rid = resp.headers["x-skiff-request-id"]
    done = server.wait_for(lambda: [r for r in records(server, "sse") if r["id"] == rid],
                           "the stream's invocation record")
    assert done[0]["status"] == 200 and done[0]["error"] is None


def test_wsgi_generator_streams(server):
    """A WSGI generator's first item arrives while it waits for another instance
    of the app to open its gate (through the app's KV)."""
    with server.http.stream("GET", "/flow/stream") as resp:
        assert resp.status_code == 200
        assert "content-length" not in resp.headers
        lines = resp.iter_lines()
        assert next(lines) == "first"
        with httpx.Client(base_url=server.url, timeout=30) as other:
            assert other.get("/flow/open").text == "ok"
        assert [line for line in lines if line] == ["last"]


def test_slow_client_pauses_the_app_not_the_gateway(server):
    """A client that stops reading (a small receive buffer, no autotuning) pauses
    the app inside its send once the window and the socket buffers are full: the
    app has sent well under its 15 MiB meanwhile; the rest arrives once it reads."""
    host, port = server.url.removeprefix("http://").split(":")
    total = 240 * (64 << 10)
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        client.connect((host, int(port)))
        client.sendall(b"GET /sse/flood HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        got = client.recv(1 << 16)
        seen: list[int] = []

        def paused() -> bool:  # the app's count stays put over several looks
            seen.append(state(server)["flood_sent"])
            return len(seen) > 10 and len(set(seen[-10:])) == 1

        server.wait_for(paused, "the app to be paused by back-pressure")
        assert 0 < seen[-1] <= 8 * 1024 * 1024, seen[-1]
        while chunk := client.recv(1 << 20):
            got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body.endswith(b"0\r\n\r\n") and body.count(b"x") == total
    assert state(server)["flood_sent"] == total


def test_size_cap_cuts_a_stream_and_nothing_else(server):
    """Past the 16 MiB response cap the stream is cut (the client sees it end
    without its last chunk) and cancelled in the app; its instance lives on."""
    before = state(server)["instance"]
    got = 0
    with (neighbour_watch(server), pytest.raises(httpx.RemoteProtocolError),
          server.http.stream("GET", "/sse/big") as resp):
        assert resp.status_code == 200
        for chunk in resp.iter_bytes():
            got += len(chunk)
    assert 0 < got <= 16 * 1024 * 1024
    server.wait_for(lambda: "big" in state(server)["cancelled"], "the app to be cancelled")
    assert state(server)["instance"] == before
    assert server.wait_for(lambda: [r for r in records(server, "sse")
                                    if r["error"] == "response_too_large"], "the record")


def test_idle_stream_is_cut_while_its_instance_serves_others(server):
    """A stream that sends nothing for SKIFF_STREAM_IDLE_TIMEOUT is cut and
    cancelled; requests to the same instance meanwhile all succeed."""
    before = state(server)["instance"]
    outcome: list = []

    def idle() -> None:
        try:
            with server.http.stream("GET", "/sse/idle") as resp:
                outcome.extend(resp.iter_lines())
        except httpx.RemoteProtocolError as exc:
            outcome.append(exc)

    t = threading.Thread(target=idle)
    t.start()
    others = []
    while t.is_alive():
        others.append(server.http.get("/sse/state").json()["instance"])
    t.join()
    assert outcome[0] == "data: only" and isinstance(outcome[-1], httpx.RemoteProtocolError)
    assert others and set(others) == {before}
    server.wait_for(lambda: "idle" in state(server)["cancelled"], "the app to be cancelled")
    assert [r for r in records(server, "sse") if r["error"] == "stream_idle_timeout"]


def test_asgi_request_timeout_cancels_only_that_request(server):
    """An ASGI handler past its timeout is cancelled (504), not its instance
    killed: the instance's other requests meanwhile all succeed."""
    before = state(server)["instance"]
    outcome: list[int] = []
    t = threading.Thread(target=lambda: outcome.append(
        server.http.get("/sse/stuck").status_code))
    t.start()
    others = []
    while t.is_alive():
        others.append(server.http.get("/sse/state").json()["instance"])
    t.join()
    assert outcome == [504]
    assert others and set(others) == {before}
    server.wait_for(lambda: "stuck" in state(server)["cancelled"], "the app to be cancelled")
    assert state(server)["instance"] == before


def test_client_going_away_cancels_the_apps_generator(server):
    with (httpx.Client(base_url=server.url, timeout=30) as client,
          client.stream("GET", "/sse/hang") as resp):
        assert next(resp.iter_lines()) == "data: only"
    server.wait_for(lambda: "hang" in state(server)["cancelled"],
                    "the app to record its cancellation")


def test_background_task_runs_after_the_response(server):
    """The response is complete while the task still waits (for /release-bg,
    sent only after the response was read); then the task finishes."""
    resp = server.http.get("/sse/bg")
    assert resp.status_code == 200 and resp.json() == {"queued": True}
    assert state(server)["bg_done"] == 0
    server.http.get("/sse/release-bg")
    server.wait_for(lambda: state(server)["bg_done"] == 1, "the background task to finish")


@pytest.mark.parametrize(("how", "why"), [
    ("other-id", "a response head for a request it is not answering"),
    ("chunk-not-streaming", "a body chunk for a request it is not streaming"),
    ("after-end", "a body chunk after the end of its response"),
    ("giant", "unacknowledged"),
    ("head-twice", "a response head for a request it is not answering"),
])
def test_broken_stream_frames_stop_the_instance_whole(server, how, why):
    with neighbour_watch(server):
        try:
            with server.http.stream("GET", "/liar/", params={"how": how}) as resp:
                status = resp.status_code
                resp.read()
        except httpx.RemoteProtocolError:
            status = "cut"
        assert status in (200, 502, "cut")
        server.wait_for(lambda: any(why in line and "liar" in line for line in server.lines),
                        "the gateway to stop the instance")
        server.wait_for(lambda: server.app("liar")["instances"] == 0, "the instance to be gone")
    server.lines.clear()


def test_platform_alive_after_the_streams(server):
    assert server.http.get("/neighbour/").status_code == 200
    assert server.http.get("/sse/state").status_code == 200
    assert server.admin.get("/health").status_code == 200
