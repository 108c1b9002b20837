"""The data plane's ASGI app: route, serve static files, read the body within
its limit, dispatch to the app's pool, answer.

Written as a bare ASGI callable rather than on a framework: this is the one
hot path every request takes, and a router/middleware stack would cost more
than all of it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from skiff.errors import NotFound, PayloadTooLarge, SkiffError
from skiff.gateway.static import StaticSite, etag_matches
from skiff.instance import protocol as p
from skiff.platform import Platform

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

_json = msgspec.json.Encoder()
ADMIN_PREFIX = "/_skiff/"


def error_response(exc: SkiffError, request_id: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = exc.to_dict()
    body["error"]["request_id"] = request_id
    headers = [(b"content-type", b"application/json"), (b"x-skiff-request-id", request_id.encode())]
    retry = exc.details.get("retry_after")
    if retry is not None:
        headers.append((b"retry-after", str(retry).encode()))
    return exc.status, headers, _json.encode(body)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Gateway:
    def __init__(self, platform: Platform, admin: Callable | None = None) -> None:
        self.platform = platform
        self.admin = admin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.platform.start()
                except Exception as exc:  # noqa: BLE001 - reported to uvicorn, which exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.platform.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith(ADMIN_PREFIX) and self.admin is not None:
            await self.admin(scope, receive, send)
            return
        platform = self.platform
        host = ""
        inm = invocation_type = traceparent = None
        for k, v in scope["headers"]:
            if k == b"host":
                host = v.decode("latin-1")
            elif k == b"if-none-match":
                inm = v.decode("latin-1")
            elif k == b"x-skiff-invocation-type":
                invocation_type = v.decode("latin-1")
            elif k == b"traceparent":
                traceparent = v.decode("latin-1")
        rid = platform.new_request_id()
        try:
            match = platform.router.match(host, path)
            if match is None:
                raise NotFound(f"no app is routed at {path!r}; deployed apps answer at /<app>/ "
                               "(see `skiff ls`)", code="app_not_found")
            app = platform.apps[match.app]
            method = scope["method"]
            if app.static is not None and method in ("GET", "HEAD"):
                if match.mount and path == match.mount:
                    q = scope.get("query_string", b"")
                    loc = (match.mount + "/" + ("?" + q.decode("latin-1") if q else "")).encode()
                    await _send(send, 308, [(b"location", loc), (b"content-length", b"0")], b"")
                    return
                f = app.static.lookup(match.path)
                if f is not None:
                    await self._static(send, f, inm, method, rid)
                    return
            if app.pool is None:
                raise NotFound(f"app {app.name} has no file at {match.path!r}", code="not_found")
            body = await self._body(receive, platform.config.max_body_bytes)
            scheme = scope.get("scheme", "http")
            client = scope.get("client")
            timeout = app.pool.target.timeout
            req = p.HttpRequest(
                id=rid, method=method, path=match.path,
                query=scope.get("query_string", b"").decode("latin-1"),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
                body=body, scheme=scheme, host=host, client=client[0] if client else "",
                mount=match.mount, deadline_ms=(time.time() + timeout) * 1000)
            if invocation_type is not None and invocation_type.lower() == "event":
                # accepted durably first, answered 202; retries and DLQ follow spec.async
                await platform.events.accept(app.name, req, traceparent)
                body = _json.encode({"invocation_id": rid, "status": "queued",
                                     "status_url": f"/_skiff/api/invocations/{rid}"})
                await _send(send, 202, [(b"content-type", b"application/json"),
                                        (b"x-skiff-request-id", rid.encode())], body)
                return
            resp = await platform.invoke(app, req, "http")
        except SkiffError as exc:
            await _send(send, *error_response(exc, rid))
            return
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers]
        headers.append((b"x-skiff-request-id", rid.encode()))
        await _send(send, resp.status, headers, b"" if method == "HEAD" else resp.body)

    async def _static(self, send: Send, f: Any, inm: str | None, method: str, rid: str) -> None:
        headers = [(b"etag", f.etag.encode()), (b"cache-control", b"no-cache"),
                   (b"x-skiff-request-id", rid.encode())]
        if inm is not None and etag_matches(inm, f.etag):
            await _send(send, 304, headers, b"")
            return
        headers += [(b"content-type", f.content_type.encode()),
                    (b"content-length", str(f.size).encode())]
        await _send(send, 200, headers, b"" if method == "HEAD" else StaticSite.body(f))

    @staticmethod
    async def _body(receive: Receive, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            chunk = msg.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes "
                                          "(SKIFF_MAX_BODY_BYTES)")
                chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
