"""The egress proxy end to end, on 127.0.0.1 only: a tiny upstream HTTP server,
an injected resolver that maps test names to 127.0.0.1, and real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from skiff.egress import EgressEvent, EgressListener, EgressPolicy, EgressProxy, Guard

LOOPBACK = "127.0.0.1"


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


class Upstream:
    """A one-request-per-connection HTTP/1.1 server that answers with what it received."""

    def __init__(self, mode: str = "echo") -> None:
        self.mode = mode
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> Upstream:
        self._server = await asyncio.start_server(self._handle, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.mode == "silent":  # accept, never answer: a stuck upstream
                await reader.read()
                return
            if self.mode == "until-eof":  # read everything, then answer with its length
                data = await reader.read()
                writer.write(f"got {len(data)} bytes".encode())
                await writer.drain()
                return
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.split("\r\n")
            headers = {}
            for line in lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            payload = json.dumps({"request_line": request_line, "headers": headers,
                                  "body": body.decode()}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (len(payload), payload))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@dataclass
class Harness:
    proxy: EgressProxy
    listener: EgressListener
    upstream: Upstream
    events: list[EgressEvent] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)

    @property
    def proxy_url(self) -> str:
        host, port = self.listener.address  # type: ignore[misc]
        return f"http://{host}:{port}"

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self.listener.address, str):
            return await asyncio.open_unix_connection(self.listener.address)
        host, port = self.listener.address
        return await asyncio.open_connection(host, port)

    async def wait_events(self, count: int) -> list[EgressEvent]:
        """Readiness wait for ``count`` events (bounded; not a timing assertion)."""
        for _ in range(2000):
            if len(self.events) >= count:
                return self.events
            await asyncio.sleep(0.005)
        raise AssertionError(f"expected {count} events, got {self.events}")


@contextlib.asynccontextmanager
async def harness(entries: Callable[[int], list[str]], *, mode: str = "echo",
                  unix_path: Path | None = None, names: dict[str, list[str]] | None = None,
                  **options: object) -> AsyncIterator[Harness]:
    """Upstream + proxy + one listener for app "shop"; ``entries(upstream_port)`` is spec.egress;
    ``names`` adds to what the resolver knows."""
    upstream = await Upstream(mode).start()
    table = {"api.allowed.test": [LOOPBACK], "api.other.test": [LOOPBACK], **(names or {})}
    events: list[EgressEvent] = []
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    # the upstream is on loopback, which the platform bans unless its operator allows it
    options.setdefault("guard", Guard(allow=[LOOPBACK]))
    proxy = EgressProxy(resolver=resolve, on_event=events.append, **options)  # type: ignore[arg-type]
    policy = EgressPolicy.parse(entries(upstream.port))
    if unix_path is not None:
        listener = await proxy.serve_unix(unix_path, "shop", policy)
    else:
        listener = await proxy.serve_tcp(LOOPBACK, 0, "shop", policy)
    h = Harness(proxy, listener, upstream, events, lookups)
    try:
        yield h
    finally:
        await proxy.aclose()
        await upstream.stop()


def allow_upstream(port: int) -> list[str]:
    """The name, and the loopback address explicitly (needed since it is private)."""
    return ["api.allowed.test", f"{LOOPBACK}:{port}"]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split(" ")[1]), headers, body


async def send_connect(h: Harness, target: str
                       ) -> tuple[int, dict[str, str], bytes, asyncio.StreamReader,
                                  asyncio.StreamWriter]:
    reader, writer = await h.open()
    writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    await writer.drain()
    status, headers, body = await read_response(reader)
    return status, headers, body, reader, writer


def test_connect_tunnel_relays_bytes_both_ways() -> None:
    """CONNECT to an allowed name opens a tunnel; the event counts the bytes each way."""
    async def scenario() -> None:
        async with harness(allow_upstream) as h:
            target = f"api.allowed.test:{h.upstream.port}"
            status, _, _, reader, writer = await send_connect(h, target)
            assert status == 200
            request = b"GET /through HTTP/1.1\r\nHost: api.allowed.test\r\n\r\n"
            writer.write(request)
            response = await reader.read()  # the upstream answers and closes
            writer.close()
            assert b'"request_line": "GET /through HTTP/1.1"' in response
            (event,) = await h.wait_events(1)
            assert (event.app, event.host, event.port) == ("shop", "api.allowed.test",
                                                           h.upstream.port)
            assert event.allowed and event.rule == "api.allowed.test"
            assert event.reason == "closed" and event.method == "CONNECT"
            assert event.address == LOOPBACK
            assert (event.bytes_up, event.bytes_down) == (len(request), len(response))
            assert event.duration_ms >= 0 and event.ts > 0
    run(scenario)


def test_connect_relays_half_close() -> None:
    """A client that shuts its write side still gets the upstream's answer (EOF is passed on)."""
    async def scenario() -> None:
        async with harness(allow_upstream, mode="until-eof") as h:
            status, _, _, reader, writer = await send_connect(h, f"api.allowed.test:{h.upstream.port}")
            assert status == 200
            writer.write(b"x" * 100_000)
            writer.write_eof()
            assert await reader.read() == b"got 100000 bytes"
            writer.close()
            (event,) = await h.wait_events(1)
            assert (event.bytes_up, event.bytes_down) == (100_000, len(b"got 100000 bytes"))
    run(scenario)


def test_plain_http_is_forwarded_with_httpx() -> None:
    """An absolute-form request is rewritten to origin-form with its own Host, minus hop headers."""
    async def scenario() -> None:
        async with harness(allow_upstream) as h:
            async with httpx.AsyncClient(proxy=h.proxy_url, trust_env=False) as client:
                url = f"http://api.allowed.test:{h.upstream.port}/hello?x=1"
                response = await client.post(url, content=b"ping",
                                             headers={"Proxy-Authorization": "Basic c2VjcmV0"})
            assert response.status_code == 200
            seen = response.json()
            assert seen["request_line"] == "POST /hello?x=1 HTTP/1.1"
            assert seen["headers"]["host"] == f"api.allowed.test:{h.upstream.port}"
            assert seen["headers"]["connection"] == "close"
            assert "proxy-authorization" not in seen["headers"]
            assert seen["body"] == "ping"
            (event,) = await h.wait_events(1)
            assert event.allowed and event.method == "POST" and event.reason == "closed"
            assert event.bytes_down == len(response.content) + len(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(response.content))
            assert event.bytes_up > len(b"ping")
    run(scenario)


def test_denied_host_gets_403_naming_the_rule_to_add() -> None:
    """A host no entry allows is refused at once, never resolved, and told what to add."""
    async def scenario() -> None:
        async with harness(allow_upstream) as h:
            status, headers, body, _, writer = await send_connect(h, "api.other.test:443")
            writer.close()
            assert status == 403
            assert headers["x-skiff-egress-denied"] == "api.other.test:443"
            assert headers["x-skiff-error-code"] == "egress_denied"
            error = json.loads(body)["error"]
            assert error["code"] == "egress_denied"
            assert error["message"] == ('egress to api.other.test:443 is not allowed for app shop; '
                                        'add "api.other.test:443" to spec.egress')
            assert "api.other.test" not in h.lookups  # no DNS side channel for denied names
            (event,) = await h.wait_events(1)
            assert not event.allowed and event.reason == "not_allowed"
            assert event.rule == "api.other.test:443"
            assert (event.bytes_up, event.bytes_down, event.address) == (0, 0, None)
            assert h.upstream.connections == 0
    run(scenario)


def test_denied_plain_http_gets_403_too() -> None:
    """The same answer for a forwarded request, readable as a normal HTTP response."""
    async def scenario() -> None:
        async with harness(allow_upstream) as h:
            async with httpx.AsyncClient(proxy=h.proxy_url, trust_env=False) as client:
                response = await client.post("http://api.other.test/x", content=b"a" * 10_000)
            assert response.status_code == 403
            assert response.headers["x-skiff-egress-denied"] == "api.other.test:80"
            assert response.json()["error"]["code"] == "egress_denied"
    run(scenario)


def test_name_resolving_to_loopback_is_refused_as_private() -> None:
    """Allowed by name but resolving to 127.0.0.1: refused unless an entry names the address."""
    async def scenario() -> None:
        async with harness(lambda port: ["api.allowed.test", "*"]) as h:
            target = f"api.allowed.test:{h.upstream.port}"
            status, headers, body, _, writer = await send_connect(h, target)
            writer.close()
            assert status == 403
            assert headers["x-skiff-egress-denied"] == f"{LOOPBACK}:{h.upstream.port}"
            error = json.loads(body)["error"]
            assert error["code"] == "egress_private_address"
            assert "resolves to the private address 127.0.0.1" in error["message"]
            assert h.upstream.connections == 0
            (event,) = await h.wait_events(1)
            assert not event.allowed and event.reason == "private_address"

            # The same host through an IP literal, allowed by "*": still private.
            status, *_, writer = await send_connect(h, f"{LOOPBACK}:{h.upstream.port}")
            writer.close()
            assert status == 403

            # The operator names the address: now it is reachable.
            h.listener.policy = EgressPolicy.parse(allow_upstream(h.upstream.port))
            status, *_, writer = await send_connect(h, target)
            writer.close()
            assert status == 200
            await h.wait_events(3)
            assert h.events[2].allowed and h.events[2].rule == "api.allowed.test"
    run(scenario)


def test_unix_socket_listener(tmp_path: Path) -> None:
    """The listener the lead bridges into the namespace: a private unix socket."""
    path = tmp_path / "shop.sock"

    async def scenario() -> None:
        async with harness(allow_upstream, unix_path=path) as h:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            status, _, _, reader, writer = await send_connect(h, f"api.allowed.test:{h.upstream.port}")
            assert status == 200
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"200 OK" in await reader.read()
            writer.close()
            (event,) = await h.wait_events(1)
            assert event.app == "shop" and event.allowed
            h.listener.close()
            await h.listener.wait_closed()
            assert not path.exists()
    run(scenario)


def test_the_parent_span_is_asked_with_the_kernels_pid(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """parent_of gets the app and the connecting pid (the kernel's, on a unix socket),
    for denied attempts too; its answer is the event's traceparent, and a failing
    parent_of costs the span's parent, not the connection."""
    asked: list[tuple[str, int | None]] = []
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    def parent_of(app: str, pid: int | None) -> str:
        asked.append((app, pid))
        if len(asked) == 3:
            raise RuntimeError("tracing down")
        return parent

    async def scenario() -> None:
        async with harness(allow_upstream, unix_path=tmp_path / "shop.sock",
                           parent_of=parent_of) as h:
            for target in (f"api.allowed.test:{h.upstream.port}", "api.other.test:443",
                           f"api.allowed.test:{h.upstream.port}"):
                status, *_, writer = await send_connect(h, target)
                writer.close()
                assert status == (403 if "other" in target else 200)
            events = await h.wait_events(3)
            assert sorted(e.traceparent for e in events) == ["", parent, parent]
            assert [e.traceparent for e in events if not e.allowed] == [parent]
    run(scenario)
    assert asked == [("shop", os.getpid())] * 3
    assert "egress parent_of failed" in caplog.text


def test_idle_tunnel_is_closed() -> None:
    """A tunnel in which nothing moves is closed after idle_timeout."""
    async def scenario() -> None:
        async with harness(allow_upstream, mode="silent", idle_timeout=0.05) as h:
            status, _, _, reader, writer = await send_connect(h, f"api.allowed.test:{h.upstream.port}")
            assert status == 200
            assert await reader.read() == b""  # the proxy hung up
            writer.close()
            (event,) = await h.wait_events(1)
            assert event.reason == "idle_timeout" and event.allowed
    run(scenario)


def test_connection_cap_answers_429() -> None:
    """Over the per-app cap a new connection gets 429; closing one frees the slot."""
    async def scenario() -> None:
        async with harness(allow_upstream, mode="silent", max_connections_per_app=1) as h:
            target = f"api.allowed.test:{h.upstream.port}"
            status, _, _, _, first = await send_connect(h, target)
            assert status == 200 and h.proxy.open_connections("shop") == 1
            status, headers, body, _, second = await send_connect(h, target)
            second.close()
            assert status == 429
            assert json.loads(body)["error"]["code"] == "egress_busy"
            (event,) = await h.wait_events(1)
            assert not event.allowed and event.reason == "too_many_connections"
            first.close()
            await h.wait_events(2)
            assert h.proxy.open_connections("shop") == 0
            status, *_, third = await send_connect(h, target)
            third.close()
            assert status == 200
    run(scenario)


def test_unresolvable_name_gets_502() -> None:
    """An allowed name that does not resolve is a 502 with its own code."""
    async def scenario() -> None:
        async with harness(lambda port: ["*.allowed.test"]) as h:
            status, _, body, _, writer = await send_connect(h, "nowhere.allowed.test:443")
            writer.close()
            assert status == 502
            assert json.loads(body)["error"]["code"] == "egress_resolve_failed"
            (event,) = await h.wait_events(1)
            assert event.allowed and event.reason == "resolve_failed"
    run(scenario)


def test_refused_upstream_gets_502() -> None:
    """An upstream that refuses the connection is a 502 naming the address tried."""
    with socket.socket() as probe:  # a loopback port with nothing listening on it
        probe.bind((LOOPBACK, 0))
        closed_port = probe.getsockname()[1]

    async def scenario() -> None:
        async with harness(lambda port: ["api.allowed.test", LOOPBACK]) as h:
            status, _, body, _, writer = await send_connect(h, f"api.allowed.test:{closed_port}")
            writer.close()
            assert status == 502
            error = json.loads(body)["error"]
            assert error["code"] == "egress_connect_failed" and LOOPBACK in error["message"]
            (event,) = await h.wait_events(1)
            assert event.reason == "connect_failed"
    run(scenario)


@pytest.mark.parametrize("request_head", [
    b"GET /path HTTP/1.1\r\nHost: api.allowed.test\r\n\r\n",   # origin-form: not a proxy request
    b"CONNECT api.allowed.test HTTP/1.1\r\n\r\n",              # no port
    b"GET https://api.allowed.test/ HTTP/1.1\r\n\r\n",         # https must use CONNECT
    b"HELLO\r\n\r\n",
])
def test_bad_requests_get_400(request_head: bytes) -> None:
    """Anything but CONNECT or absolute-form HTTP is a 400 saying what the proxy expects."""
    async def scenario() -> None:
        async with harness(allow_upstream) as h:
            reader, writer = await h.open()
            writer.write(request_head)
            status, _, body, = await read_response(reader)
            writer.close()
            assert status == 400
            assert json.loads(body)["error"]["code"] == "bad_proxy_request"
            (event,) = await h.wait_events(1)
            assert event.reason == "bad_request" and not event.allowed
    run(scenario)


def test_silent_client_is_not_an_attempt() -> None:
    """A connection closed before any byte (a health check) records no event."""
    async def scenario() -> None:
        async with harness(allow_upstream) as h:
            _, writer = await h.open()
            writer.close()
            status, *_, writer = await send_connect(h, "api.other.test:443")
            writer.close()
            events = await h.wait_events(1)
            assert [e.host for e in events] == ["api.other.test"]
    run(scenario)


def test_broken_event_callback_does_not_break_connections(caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    """on_event failing is logged; the app's traffic goes on."""
    async def scenario() -> None:
        async with harness(allow_upstream) as h:
            def broken(event: EgressEvent) -> None:
                raise RuntimeError("observer down")
            h.proxy.on_event = broken
            for _ in range(2):
                status, *_, writer = await send_connect(h, f"api.allowed.test:{h.upstream.port}")
                writer.close()
                assert status == 200
    run(scenario)
    assert "egress on_event callback failed" in caplog.text


def test_closing_the_listener_aborts_open_tunnels() -> None:
    """Removing an app's listener ends its tunnels at once and records them as aborted."""
    async def scenario() -> None:
        async with harness(allow_upstream, mode="silent") as h:
            status, _, _, reader, writer = await send_connect(h, f"api.allowed.test:{h.upstream.port}")
            assert status == 200
            h.listener.close()
            await h.listener.wait_closed()
            assert await reader.read() == b""
            writer.close()
            (event,) = await h.wait_events(1)
            assert event.reason == "aborted" and event.allowed
            assert h.proxy.open_connections("shop") == 0
    run(scenario)


def test_listeners_are_per_app() -> None:
    """Two listeners, two apps: each connection is judged by its own listener's policy."""
    async def scenario() -> None:
        async with harness(allow_upstream) as h:
            other = await h.proxy.serve_tcp(LOOPBACK, 0, "blog", EgressPolicy.parse([]))
            host, port = other.address  # type: ignore[misc]
            reader, writer = await asyncio.open_connection(host, port)
            target = f"api.allowed.test:{h.upstream.port}"
            writer.write(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
            status, headers, _ = await read_response(reader)
            writer.close()
            assert status == 403 and headers["x-skiff-egress-denied"] == target
            status, *_, writer = await send_connect(h, target)
            writer.close()
            assert status == 200
            events = await h.wait_events(2)
            assert sorted((e.app, e.allowed) for e in events) == [("blog", False), ("shop", True)]
    run(scenario)


def test_oversized_and_slow_heads_get_400() -> None:
    """A head over max_header_bytes, or one that never completes, is a 400 and a closed socket."""
    async def scenario() -> None:
        async with harness(allow_upstream, max_header_bytes=1024, header_timeout=0.05) as h:
            reader, writer = await h.open()
            writer.write(b"GET http://api.allowed.test/ HTTP/1.1\r\nX-Big: " + b"a" * 4096)
            status, _, body = await read_response(reader)
            writer.close()
            assert status == 400 and b"too large" in body
            reader, writer = await h.open()
            writer.write(b"CONNECT api.allowed.test:443 HTTP/1.1\r\n")  # and then nothing
            status, _, body = await read_response(reader)
            writer.close()
            assert status == 400 and b"no complete request head" in body
            events = await h.wait_events(2)
            assert [e.reason for e in events] == ["bad_request", "bad_request"]
    run(scenario)


def test_unix_listener_replaces_a_stale_socket_but_not_a_file(tmp_path: Path) -> None:
    """A socket file left by a crash is replaced; any other file at the path is an error."""
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))
    regular = tmp_path / "regular"
    regular.write_text("keep me")

    async def scenario() -> None:
        proxy = EgressProxy()
        listener = await proxy.serve_unix(stale, "shop", EgressPolicy.parse([]), mode=0o660)
        assert stat.S_IMODE(stale.stat().st_mode) == 0o660
        with pytest.raises(FileExistsError):
            await proxy.serve_unix(regular, "shop", EgressPolicy.parse([]))
        await proxy.aclose()
        assert listener.active == 0 and not stale.exists()
    run(scenario)
    assert regular.read_text() == "keep me"


def test_a_failing_resolver_fails_one_connection_only(caplog: pytest.LogCaptureFixture) -> None:
    """An unexpected error is a 502 for that connection, logged; the listener keeps serving."""
    async def scenario() -> None:
        async with harness(allow_upstream) as h:
            async def broken(host: str, port: int) -> list[str]:
                raise RuntimeError("resolver bug")
            h.proxy.resolver = broken
            status, _, body, _, writer = await send_connect(h, "api.allowed.test:443")
            writer.close()
            assert status == 502
            assert json.loads(body)["error"]["code"] == "egress_internal_error"
            (event,) = await h.wait_events(1)
            assert event.reason == "internal_error"
            status, *_, writer = await send_connect(h, "api.other.test:443")
            writer.close()
            assert status == 403
    run(scenario)
    assert "egress proxy failed on a connection of app shop" in caplog.text


# -- destinations no manifest grants (the guard) ---------------------------------------------

BANNED = {
    "loop.test": ("127.0.0.1", "a loopback address"),
    "loop6.test": ("::1", "a loopback address"),
    "mapped.test": ("::ffff:127.0.0.1", "a loopback address"),
    "meta.test": ("169.254.169.254", "the cloud metadata address"),
    "meta6.test": ("fd00:ec2::254", "the cloud metadata address"),
    "link.test": ("169.254.7.7", "a link-local address"),
    "link6.test": ("fe80::1", "a link-local address"),
    "zero.test": ("0.0.0.0", "an unspecified address"),
    "zero6.test": ("::", "an unspecified address"),
}


def test_names_resolving_to_banned_addresses_are_refused_whatever_the_policy() -> None:
    """A policy naming every banned address (as a revision stored before the guard could)
    still reaches none of them: by name or literally, the resolved address is checked; the
    answer and the event say why, and no spec.egress entry is suggested."""
    names = {name: [address] for name, (address, _) in BANNED.items()}
    entries = ["*"] + [f"[{a}]" if ":" in a else a for a, _ in BANNED.values()]

    async def scenario() -> None:
        async with harness(lambda port: entries, names=names, guard=Guard()) as h:
            for index, (name, (address, label)) in enumerate(BANNED.items()):
                literal = f"[{address}]" if ":" in address else address
                for target in (f"{name}:80", f"{literal}:80"):
                    status, headers, body, _, writer = await send_connect(h, target)
                    writer.close()
                    assert status == 403, (target, body)
                    assert "x-skiff-egress-denied" not in headers
                    error = json.loads(body)["error"]
                    assert error["code"] == "egress_forbidden_address"
                    assert label in error["message"] and "SKIFF_EGRESS_ALLOW" in error["message"]
                events = await h.wait_events(2 * index + 2)
                for event in events[-2:]:
                    assert (event.allowed, event.reason, event.rule) == (
                        False, "forbidden_address", None)
                    assert label in event.detail
            assert h.upstream.connections == 0
    run(scenario)


def test_operator_allowance_opens_exactly_what_it_names() -> None:
    """Loopback is banned until the operator allows the address:port; then a name resolving
    there works too (the policy still has to allow it)."""
    async def scenario() -> None:
        async with harness(allow_upstream, guard=Guard()) as h:
            target = f"api.allowed.test:{h.upstream.port}"
            status, *_, writer = await send_connect(h, target)
            writer.close()
            assert status == 403
            h.proxy.guard = Guard(allow=[f"127.0.0.1:{h.upstream.port + 1}"])
            status, *_, writer = await send_connect(h, target)
            writer.close()
            assert status == 403
            h.proxy.guard = Guard(allow=[f"127.0.0.1:{h.upstream.port}"])
            status, *_, writer = await send_connect(h, target)
            writer.close()
            assert status == 200
    run(scenario)


def test_platform_port_is_refused_even_where_loopback_is_allowed() -> None:
    """Allowing all of loopback does not open the platform's own port."""
    async def scenario() -> None:
        async with harness(allow_upstream, guard=Guard(allow=["127.0.0.0/8"])) as h:
            h.proxy.guard.platform_ports = {h.upstream.port}
            status, _, body, _, writer = await send_connect(h, f"api.allowed.test:{h.upstream.port}")
            writer.close()
            assert status == 403
            assert "the platform's own port" in json.loads(body)["error"]["message"]
            assert h.upstream.connections == 0
            h.proxy.guard = Guard(allow=[f"127.0.0.1:{h.upstream.port}"],
                                  platform_ports=[h.upstream.port])
            status, *_, writer = await send_connect(h, f"api.allowed.test:{h.upstream.port}")
            writer.close()
            assert status == 200
    run(scenario)


def _host_address() -> str | None:
    """A non-loopback IPv4 address of this host (the route a datagram would take; none is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith(("0.", "127.")) else address


def test_platform_port_is_refused_through_the_hosts_other_addresses() -> None:
    """The platform's port reached by one of the host's own (non-loopback) addresses,
    which a manifest may name: refused once the connection shows it landed here."""
    address = _host_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address")

    async def scenario() -> None:
        accepted: list[bytes] = []

        async def platform(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(await reader.read())
            writer.close()

        server = await asyncio.start_server(platform, address, 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with harness(lambda _: [f"{address}:{port}"],
                               guard=Guard(platform_ports=[port])) as h:
                status, _, body, _, writer = await send_connect(h, f"{address}:{port}")
                writer.close()
                assert status == 403, body
                assert "the platform's own port" in json.loads(body)["error"]["message"]
                for _ in range(200):
                    if accepted:
                        break
                    await asyncio.sleep(0.01)
                assert accepted in ([], [b""])  # at most a connection; not a byte was sent
        finally:
            server.close()
            await server.wait_closed()
    run(scenario)


# -- what an app can make the proxy hold ----------------------------------------------------

async def _idle(h: Harness, count: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(count):
        _, writer = await h.open()
        writers.append(writer)
    for _ in range(500):  # readiness: the proxy has accepted them all
        if h.proxy.open_connections("shop") >= count:
            break
        await asyncio.sleep(0.005)
    return writers


def test_idle_connections_count_against_the_app_cap_from_accept() -> None:
    """Connections that never send a head hold the app's slots: the next one is refused at
    once (429), a flood of refusals makes a few events that count the rest, and the slots
    come back when the idle connections go."""
    async def scenario() -> None:
        async with harness(allow_upstream, max_connections_per_app=3) as h:
            idle = await _idle(h, 3)
            assert h.proxy.open_connections("shop") == 3
            status, headers, body, _, writer = await send_connect(h, "api.allowed.test:443")
            writer.close()
            assert status == 429 and headers["x-skiff-error-code"] == "egress_busy"
            assert "SKIFF_EGRESS_MAX_CONNECTIONS_PER_APP" in json.loads(body)["error"]["message"]
            (event,) = await h.wait_events(1)
            assert (event.reason, event.host, event.allowed) == ("too_many_connections", "", False)
            assert "3 egress connections" in event.detail
            for _ in range(200):  # a flood: each refused without waiting for its head
                reader, writer = await h.open()
                await reader.read()
                writer.close()
            for _ in range(1000):  # the rest are reported when the interval ends
                if sum(1 + e.suppressed for e in h.events) == 201:
                    break
                await asyncio.sleep(0.005)
            assert sum(1 + e.suppressed for e in h.events) == 201
            assert len(h.events) < 20  # a few reports, not one per refusal
            assert h.proxy.open_connections("shop") == 3
            for writer in idle:
                writer.close()
            for _ in range(500):
                if h.proxy.open_connections("shop") == 0:
                    break
                await asyncio.sleep(0.005)
            status, *_, writer = await send_connect(h, f"api.allowed.test:{h.upstream.port}")
            writer.close()
            assert status == 200
    run(scenario)


def test_global_cap_answers_503() -> None:
    """All apps together stop at max_connections (the descriptor budget): 503, logged."""
    async def scenario() -> None:
        async with harness(allow_upstream, max_connections=2) as h:
            blog = await h.proxy.serve_tcp(LOOPBACK, 0, "blog", EgressPolicy.parse([]))
            idle = await _idle(h, 2)
            assert h.proxy.open_connections() == 2
            host, port = blog.address  # type: ignore[misc]
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"CONNECT api.allowed.test:443 HTTP/1.1\r\n\r\n")
            status, headers, _ = await read_response(reader)
            writer.close()
            assert status == 503 and headers["x-skiff-error-code"] == "egress_unavailable"
            (event,) = await h.wait_events(1)
            assert (event.app, event.reason) == ("blog", "proxy_full")
            for w in idle:
                w.close()
    run(scenario)


def test_a_connection_that_sends_no_head_gives_its_slot_back() -> None:
    """The head timeout ends an idle connection, and its slot is free again."""
    async def scenario() -> None:
        async with harness(allow_upstream, max_connections_per_app=1, header_timeout=0.05) as h:
            reader, writer = await h.open()
            status, _, _ = await read_response(reader)
            assert status == 400
            writer.close()
            for _ in range(500):
                if h.proxy.open_connections("shop") == 0:
                    break
                await asyncio.sleep(0.005)
            assert h.proxy.open_connections("shop") == 0
            status, *_, writer = await send_connect(h, f"api.allowed.test:{h.upstream.port}")
            writer.close()
            assert status == 200
    run(scenario)
