"""WebSockets through the gateway, for ASGI apps.

A handshake is routed as an HTTP request is, then sent to the app's pool as a
``WsConnect``: the connection holds one of the instance's concurrency slots until
the app's call returns. The app accepts (the gateway accepts the client's
upgrade then) or refuses; every refusal the gateway makes itself is an HTTP
answer in Skiff's error format, never uvicorn's bare 403:

* 400 ``websocket_not_supported``: the app is not an ASGI app (Lambda, WSGI,
  static files have no WebSocket interface);
* 429 ``websocket_limit``: the app holds SKIFF_WS_MAX_CONNECTIONS open already;
  429 ``too_many_requests`` when its instances and their queue are full;
* 403 ``websocket_refused``: the app closed the connection before accepting it;
* 500/502/504 as for an HTTP request when the app fails or does not answer.

Once open, messages pass both ways, each only when the other side has taken the
last ones (uvicorn's send waits for the client; the instance's credit waits for
the app), so a client or an app that does not read holds at most one window
here. Close codes pass both ways. The gateway closes a connection with 1001
after SKIFF_WS_IDLE_TIMEOUT seconds with no message either way (or after
SKIFF_STREAM_MAX_SECONDS in all), 1009 when the app sends a message over
SKIFF_WS_MAX_MESSAGE_BYTES (uvicorn does the same for the client's), and 1011
when the app fails or its instance dies. Stopping one connection cancels only
that call in the instance.
"""

from __future__ import annotations

import asyncio
import contextlib

from skiff import ipc as p
from skiff.errors import InvocationError, NotFound, SkiffError, TooManyRequests
from skiff.gateway.app import (
    _BAD_VALUE,
    _NOT_FROM_APPS,
    _TOKEN,
    ADMIN_PREFIX,
    METRICS_PATH,
    Gateway,
    Receive,
    Scope,
    Send,
    _forwarded_headers,
    error_response,
    failure_response,
)
from skiff.gateway.facade import ServedApp
from skiff.gateway.routing import Match
from skiff.scheduler import Invocation, WebSocket

# RFC 6455 codes an endpoint may send in a close frame
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
GOING_AWAY, INTERNAL_ERROR = 1001, 1011
# what the app's accept may not set: the handshake's own headers are uvicorn's to write
_HANDSHAKE = frozenset({"sec-websocket-accept", "sec-websocket-protocol",
                        "sec-websocket-extensions", "sec-websocket-version"})


def close_code(code: int) -> int:
    """A code the app gave, as the gateway may send it to the client: the reserved ones
    (1005, 1006, 1015, unassigned) become 1011, as an endpoint may not send them."""
    return code if code in _SENDABLE or 3000 <= code <= 4999 else INTERNAL_ERROR


def close_reason(reason: str) -> str:
    """At most 123 bytes of UTF-8 fit a close frame: cut at a character boundary."""
    return reason.encode()[:120].decode("utf-8", "ignore")


class WebSockets:
    """The gateway's ``websocket`` scopes; counts each app's open connections."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.platform = gateway.platform
        self.open: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        platform = self.platform
        rid = platform.new_request_id()
        path: str = scope["path"]
        host = ""
        for k, v in scope["headers"]:
            if k == b"host":
                host = v.decode("latin-1")
        kind = None
        try:
            if "\x00" in path:
                raise SkiffError("the request path has a NUL byte (%00)", code="bad_path",
                                 status=400)
            routed = None
            if not path.startswith(ADMIN_PREFIX) and path != METRICS_PATH:
                routed = platform.route(host, path)
            if routed is None:
                gone = platform.gone(host, path)
                if gone is not None:
                    raise gone
                raise NotFound(f"no app is routed at {path!r}; deployed apps answer at /<app>/ "
                               "(see `skiff ls`)", code="app_not_found")
            match, app = routed
            kind = app.kind
            if not app.serves or kind not in (None, "asgi"):
                raise SkiffError(
                    f"app {app.name} is a {kind or 'static'} app and takes no WebSockets; they "
                    "reach ASGI apps (FastAPI, Starlette: spec.kind asgi)",
                    code="websocket_not_supported", status=400)
            throttled = platform.throttled(app.name)  # a budget's or an expiry's 429
            if throttled is not None:
                raise throttled
            limit = platform.config.ws_max_connections
            held = self.open.get(app.name, 0)
            if held >= limit:
                raise TooManyRequests(
                    f"app {app.name} has {held} WebSockets open, its limit "
                    "(SKIFF_WS_MAX_CONNECTIONS); retry later", code="websocket_limit",
                    retry_after=1)
            self.open[app.name] = held + 1
            try:
                await self._connect(scope, receive, send, app, match, host, rid)
            finally:
                left = self.open[app.name] - 1
                if left:
                    self.open[app.name] = left
                else:
                    del self.open[app.name]
        except SkiffError as exc:
            status, headers, body = (failure_response(exc, kind, rid)
                                     if isinstance(exc, InvocationError)
                                     else error_response(exc, rid))
            await self._deny(scope, send, status, headers, body)

    async def _deny(self, scope: Scope, send: Send, status: int,
                    headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """An HTTP answer to the handshake (ASGI's WebSocket Denial Response); a server
        without it can only close (a bare 403)."""
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        headers.append(self.gateway._node)
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})

    async def _connect(self, scope: Scope, receive: Receive, send: Send, app: ServedApp,
                       match: Match, host: str, rid: str) -> None:
        platform = self.platform
        config = platform.config
        scheme = scope.get("scheme", "ws")
        client = scope.get("client")
        offered = list(scope.get("subprotocols") or [])
        req = p.WsConnect(
            id=rid, path=match.path, query=scope.get("query_string", b"").decode("latin-1"),
            headers=_forwarded_headers(scope, "https" if scheme == "wss" else "http", client),
            scheme=scheme, host=host, client=client[0] if client else "", mount=match.mount,
            subprotocols=offered, max_message=config.ws_max_message_bytes)
        inv = Invocation.start(app.name, "websocket", req, timeout=app.timeout)
        ws = await platform.invoke(app, inv, stream=True)
        if not isinstance(ws, WebSocket):  # an instance answering a handshake with HTTP
            raise InvocationError(f"app {app.name} answered a WebSocket handshake with an "
                                  "HTTP response", code="invalid_response")
        if not ws.accepted:
            ws.status = 403
            ws.close(1006)  # arms the grace: an app that refuses, then hangs, is cancelled
            ws.finish("websocket_refused")
            code = ws.refusal.code if ws.refusal is not None else 1000
            raise SkiffError(f"app {app.name} refused the WebSocket (it closed the connection "
                             f"with code {code} before accepting it)", code="websocket_refused",
                             status=403)
        headers = [self.gateway._node]
        for name, value in ws.headers:
            lname = name.lower()
            if lname in _HANDSHAKE or not _is_header(lname, value):
                continue
            headers.append((lname.encode("latin-1"), value.encode("latin-1")))
        subprotocol = ws.subprotocol if ws.subprotocol in offered else None
        try:
            await send({"type": "websocket.accept", "subprotocol": subprotocol,
                        "headers": headers})
        except OSError:
            ws.close(1006)
            ws.finish("client_disconnected")
            return
        cut: str | None = "internal_error"
        try:
            cut = await self._pump(ws, receive, send)
        finally:
            ws.close(INTERNAL_ERROR)  # whatever ended the pump, the app hears of it (once)
            ws.finish(cut)
        if cut in ("websocket_idle_timeout", "websocket_max_duration"):
            why = (f"no message either way for {config.ws_idle_timeout:g}s "
                   "(SKIFF_WS_IDLE_TIMEOUT)" if cut == "websocket_idle_timeout"
                   else f"open over {config.stream_max_seconds:g}s (SKIFF_STREAM_MAX_SECONDS)")
            platform.log(app, f"WebSocket closed (1001): {why}", request_id=rid)
        elif cut == "message_too_big":
            platform.log(app, f"WebSocket closed (1009): the app sent a message over "
                         f"{ws.max_message} bytes (SKIFF_WS_MAX_MESSAGE_BYTES)", request_id=rid)

    async def _pump(self, ws: WebSocket, receive: Receive, send: Send) -> str | None:
        """Messages both ways until either side closes, or the connection is idle or
        too old. Returns None for a close by either side, else why it was cut."""
        config = self.platform.config
        loop = asyncio.get_running_loop()
        idle = config.ws_idle_timeout
        deadline = loop.time() + config.stream_max_seconds
        last = [loop.time()]  # a message passed, either way
        inbound = asyncio.ensure_future(_to_app(ws, receive, last))
        outbound = asyncio.ensure_future(_to_client(ws, send, last))
        try:
            while True:
                wait = min(last[0] + idle, deadline) - loop.time()
                if wait > 0:
                    done, _ = await asyncio.wait((inbound, outbound), timeout=wait,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if outbound in done:
                        return outbound.result()
                    if inbound in done:
                        return inbound.result()
                    continue
                cut = ("websocket_max_duration" if loop.time() >= deadline
                       else "websocket_idle_timeout")
                code, reason = GOING_AWAY, ("idle timeout" if cut == "websocket_idle_timeout"
                                            else "maximum duration")
                if ws.error is not None:  # it ended while its client was not reading
                    cut, code, reason = ws.error.code, INTERNAL_ERROR, _failed(ws.error)
                ws.close(code, reason)
                outbound.cancel()
                with contextlib.suppress(OSError):
                    await send({"type": "websocket.close", "code": code, "reason": reason})
                return cut
        finally:
            for task in (inbound, outbound):
                task.cancel()
            await asyncio.gather(inbound, outbound, return_exceptions=True)


async def _to_app(ws: WebSocket, receive: Receive, last: list[float]) -> str | None:
    """The client's messages to the app; ends when the client closes."""
    loop = asyncio.get_running_loop()
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            ws.close(int(msg.get("code") or 1005), msg.get("reason") or "")
            return None
        if msg["type"] != "websocket.receive":
            continue
        text = msg.get("text")
        data = text.encode() if text is not None else (msg.get("bytes") or b"")
        last[0] = loop.time()
        await ws.send(data, text is not None)  # past the app's close: dropped


async def _to_client(ws: WebSocket, send: Send, last: list[float]) -> str | None:
    """The app's messages to the client; ends with the app's close, its call's end
    (1000), its failure or its instance's death (1011)."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                msg = await ws.read(None)
            except InvocationError as exc:
                ws.close(INTERNAL_ERROR)
                await send({"type": "websocket.close", "code": INTERNAL_ERROR,
                            "reason": _failed(exc)})
                return exc.code
            if msg is None:  # the call returned: closed for it
                await send({"type": "websocket.close", "code": 1000})
                return None
            if isinstance(msg, p.WsClose):
                code = close_code(msg.code)
                ws.close(code)  # the app's side knows; this arms its grace to return
                await send({"type": "websocket.close", "code": code,
                            "reason": close_reason(msg.reason)})
                return "message_too_big" if msg.code == 1009 and ws.size_cut else None
            if msg.text:
                try:
                    out = {"type": "websocket.send", "text": msg.data.decode()}
                except UnicodeDecodeError:
                    ws.close(1007)
                    await send({"type": "websocket.close", "code": 1007,
                                "reason": "text that is not UTF-8"})
                    return "invalid_response"
            else:
                out = {"type": "websocket.send", "bytes": msg.data}
            await send(out)
            last[0] = loop.time()
            ws.ack(msg.data)
    except OSError:  # uvicorn's ClientDisconnected: the client went away meanwhile
        ws.close(1006)
        return "client_disconnected"


def _failed(exc: InvocationError) -> str:
    """The close reason of a call that failed: never the app's own words."""
    if exc.code in ("instance_crashed", "memory_limit"):
        return "the app's instance stopped"
    return "the app failed; see its log"


def _is_header(name: str, value: str) -> bool:
    if name in _NOT_FROM_APPS or not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
        return False
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
