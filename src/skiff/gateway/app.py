"""The data plane's ASGI app: route, serve static files, read the body within
its limit, dispatch to the app's pool, check what the app answered, answer.

Written as a bare ASGI callable rather than on a framework: this is the one
hot path every request takes, and a router/middleware stack would cost more
than all of it.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from skiff import ipc as p
from skiff.errors import InvocationError, NotFound, PayloadTooLarge, SkiffError, Unauthorized
from skiff.gateway.apiroutes import MethodNotAllowed, RouteMatch
from skiff.gateway.facade import Facade, ServedApp
from skiff.gateway.static import STREAM_CHUNK, StaticCache, StaticFile, etag_matches, read_chunk
from skiff.observe import RESPONSE_HEADER, Observe
from skiff.scheduler import Invocation, Stream

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

_json = msgspec.json.Encoder()
ADMIN_PREFIX = "/_skiff/"
METRICS_PATH = "/metrics"  # Prometheus' default path (an app named metrics serves at /metrics/)
_METRICS_UNAUTHORIZED = ("GET /metrics needs the metrics token (SKIFF_METRICS_TOKEN): send "
                         "`Authorization: Bearer <token>` (Prometheus: "
                         "`authorization: {credentials: <token>}` in the scrape config)")

# Headers an app may not send: they describe this hop or the framing of the
# body, which the gateway does itself (Content-Length of what it sends). Passed
# through, Content-Length with Transfer-Encoding (or a 1xx status, or a CR/LF in
# a value) let an app end its response early and answer the next request on the
# client's kept-alive connection. The request id and the node are the gateway's to set.
_NOT_FROM_APPS = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length",
    "te", "trailer", "trailers", "upgrade", "proxy-authenticate", "proxy-authorization",
    "x-skiff-request-id", "x-skiff-node", "traceresponse",
})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field-name
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # CR, LF, NUL and the other controls
# What a client sent about earlier hops; set by the gateway, trusted from configured proxies only
_FORWARDING = frozenset({"forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-port",
                         "x-forwarded-host", "x-forwarded-prefix", "x-forwarded-server",
                         "x-real-ip"})


def error_response(exc: SkiffError, request_id: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = exc.to_dict()
    body["error"]["request_id"] = request_id
    data = _json.encode(body)
    headers = [(b"content-type", b"application/json"), (b"x-skiff-request-id", request_id.encode()),
               (b"content-length", str(len(data)).encode())]
    retry = exc.details.get("retry_after")
    if retry is not None:
        headers.append((b"retry-after", str(retry).encode()))
    return exc.status, headers, data


#: Failures whose message Skiff wrote about the instance (a crash, its memory
#: limit, a response that broke HTTP): the caller may read them. Every other
#: failure's message may hold the app's own words (exception text, a traceback,
#: a connection string) or the host's (paths): those go to the app's log only.
_SAYABLE = frozenset({"instance_crashed", "memory_limit", "invalid_response", "response_too_large",
                      "shutting_down"})
_PUBLIC = {
    "bad_result": "the app returned a result that cannot be sent as an HTTP response",
    "not_supported": "the app answered in a way Skiff does not support",
}
_INTERNAL_ERROR_JSON = b'{"message":"Internal Server Error"}'


def failure_response(exc: InvocationError, kind: str | None,
                     request_id: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The answer to an HTTP caller for an app that failed (a data-plane reply;
    the authenticated admin API says more). An unhandled exception is answered
    as API Gateway does for a Lambda function (500 ``{"message": "Internal Server
    Error"}``) and as uvicorn and gunicorn do for ASGI and WSGI apps (500, plain
    text)."""
    if exc.code in _SAYABLE:
        return error_response(exc, request_id)
    rid = (b"x-skiff-request-id", request_id.encode())
    if exc.code == "handler_error":
        if kind in ("asgi", "wsgi"):
            body, ctype = b"Internal Server Error", b"text/plain; charset=utf-8"
        else:
            body, ctype = _INTERNAL_ERROR_JSON, b"application/json"
        return 500, [(b"content-type", ctype), rid,
                     (b"content-length", str(len(body)).encode())], body
    message = _PUBLIC.get(exc.code, "the app failed to answer")
    return error_response(SkiffError(f"{message}; its log has the details (request id "
                                     f"{request_id})", code=exc.code, status=exc.status),
                          request_id)


_NO_PARAMS: dict[str, str] = {}


def _unrouted(found: MethodNotAllowed | None,
              request_id: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """No route of the app's spec.http.routes takes the request: API Gateway's answer
    (404 Not Found), or 405 with Allow when only the method is wrong."""
    headers = [(b"content-type", b"application/json"),
               (b"x-skiff-request-id", request_id.encode())]
    if found is None:
        body = b'{"message":"Not Found"}'
        status = 404
    else:
        body = b'{"message":"Method Not Allowed"}'
        status = 405
        headers.append((b"allow", ", ".join(found.allowed).encode()))
    headers.append((b"content-length", str(len(body)).encode()))
    return status, headers, body


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def app_response(app: ServedApp, resp: p.Response, method: str, rid: str,
                 log: Callable[[str], None]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body to send for what an instance answered, checked:
    nothing an app returns may break the HTTP framing of the client's connection.
    Raises ``InvocationError`` (502 ``invalid_response``) and logs what was wrong."""
    status = resp.status
    headers, head_length = _checked_head(app, status, resp.headers, method, log)
    body = resp.body
    if status in (204, 304):
        body = b""  # these have no body; bytes after the head would be read as the next response
    else:
        headers.append((b"content-length", head_length or str(len(body)).encode()))
    if method == "HEAD":
        body = b""
    headers.append((b"x-skiff-request-id", rid.encode()))
    return status, headers, body


def stream_head(app: ServedApp, stream: Stream, method: str, rid: str,
                log: Callable[[str], None]) -> list[tuple[bytes, bytes]]:
    """The headers of a streamed response, checked as :func:`app_response` checks
    a whole one. No Content-Length: the server frames the body (chunked)."""
    headers, _ = _checked_head(app, stream.status, stream.headers, method, log)
    headers.append((b"x-skiff-request-id", rid.encode()))
    return headers


def _checked_head(app: ServedApp, status: int, raw: p.Headers, method: str,
                  log: Callable[[str], None]) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
    problem = None
    if not 200 <= status <= 599:
        problem = f"status {status} is not a final HTTP status (200-599)"
    headers: list[tuple[bytes, bytes]] = []
    head_length = None
    for name, value in raw:
        if problem is not None:
            break
        lname = name.lower()
        if not _TOKEN.fullmatch(name):
            problem = f"header name {name[:80]!r} is not an HTTP token"
        elif _BAD_VALUE.search(value):
            problem = f"header {name!r} has a control character (CR, LF, NUL...) in its value"
        elif lname in _NOT_FROM_APPS:
            if lname == "content-length" and method == "HEAD" and value.isdigit():
                head_length = value.encode()  # what a GET would send: HEAD says so too
            continue
        else:
            try:
                headers.append((lname.encode("ascii"), value.encode("latin-1")))
            except UnicodeEncodeError:
                problem = f"header {name!r} has a value that is not ISO-8859-1 text"
    if problem is not None:
        log(f"response rejected: {problem}")
        raise InvocationError(f"app {app.name} returned a response that is not valid HTTP: "
                              f"{problem}; see `skiff logs {app.name}`", code="invalid_response")
    return headers, head_length


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone away (its body was read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


# One app's requests may hold at most this fraction (1/N) of SKIFF_MAX_BUFFERED_BYTES:
# a body is held until its invocation ends, so a slow app with a long queue (maxQueue
# 100 x 6 MiB > 512 MiB) held the whole budget and every other app's bodies got 503.
# A quarter leaves three quarters to the rest, and still fits 21 default-size bodies.
APP_BODY_SHARE = 4


class BodyBudget:
    """Request-body bytes held at once: at most ``total`` over all requests, at most
    ``share`` for one app's. Bodies are read whole before an instance is picked, so
    10,000 connections of 6 MiB each would otherwise be 60 GB."""

    def __init__(self, total: int, share: int) -> None:
        self.left = total
        self.share = share
        self.by_app: dict[str, int] = {}

    def hold(self, app: str) -> _Hold:
        return _Hold(self, app)


class _Hold:
    """What one request holds of the budget, given back by :meth:`release`."""

    __slots__ = ("app", "budget", "size")

    def __init__(self, budget: BodyBudget, app: str) -> None:
        self.budget, self.app, self.size = budget, app, 0

    def take(self, n: int) -> None:
        b = self.budget
        if b.left < n:
            raise SkiffError("the server holds as many request bodies as it may "
                             "(SKIFF_MAX_BUFFERED_BYTES); retry shortly",
                             code="server_busy", status=503, retry_after=1)
        mine = b.by_app.get(self.app, 0) + n
        if mine > b.share:
            raise SkiffError(f"requests to app {self.app} hold their share of the server's "
                             "request bodies (a quarter of SKIFF_MAX_BUFFERED_BYTES) until "
                             "their invocations end; retry shortly",
                             code="server_busy", status=503, retry_after=1)
        b.left -= n
        b.by_app[self.app] = mine
        self.size += n

    def release(self) -> None:
        if self.size:
            b = self.budget
            b.left += self.size
            rest = b.by_app[self.app] - self.size
            if rest > 0:
                b.by_app[self.app] = rest
            else:
                del b.by_app[self.app]
            self.size = 0


class Gateway:
    def __init__(self, platform: Facade, admin: Callable | None = None) -> None:
        self.platform = platform
        self.admin = admin
        config = platform.config
        self.static_cache = StaticCache(config.static_cache_bytes)
        # which node answered (behind a load balancer): one constant header, made once
        self._node = (b"x-skiff-node", config.node_name.encode("latin-1"))
        self._bodies = BodyBudget(config.max_buffered_bytes,
                                  max(config.max_buffered_bytes // APP_BODY_SHARE,
                                      config.max_body_bytes))
        # uvicorn's own rules for X-Forwarded-For/-Proto, applied only to the
        # proxies the operator named (uvicorn's default trusts 127.0.0.1)
        self._proxies = (ProxyHeadersMiddleware(self._http, config.forwarded_allow_ips)
                         if config.forwarded_allow_ips else None)
        observe = getattr(platform, "observe", None)
        self.observe: Observe = observe if observe is not None else Observe()
        from skiff.gateway.websocket import WebSockets  # it uses this module's helpers

        self._websockets = WebSockets(self)
        self._ws_proxies = (ProxyHeadersMiddleware(self._websockets, config.forwarded_allow_ips)
                            if config.forwarded_allow_ips else None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            proxies = self._proxies
            client = scope.get("client")
            if proxies is not None and client and client[0] in proxies.trusted_hosts:
                scope["skiff.via_proxy"] = True
                await proxies(scope, receive, send)
            else:
                await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            proxies = self._ws_proxies
            client = scope.get("client")
            if proxies is not None and client and client[0] in proxies.trusted_hosts:
                scope["skiff.via_proxy"] = True
                await proxies(scope, receive, send)
            else:
                await self._websockets(scope, receive, send)

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
        if path == METRICS_PATH:
            await self._scrape(scope, send)
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
        hold = None  # what this request's body holds of the budget
        span = None  # the server span of a request to an app's handler
        if "\x00" in path:  # no route, file or app path has one; file APIs raise on it
            await self._reply(send, *error_response(SkiffError(
                "the request path has a NUL byte (%00)", code="bad_path", status=400), rid))
            return
        try:
            routed = platform.route(host, path)
            if routed is None:
                gone = platform.gone(host, path)  # an archived app says how to restore it
                if gone is not None:
                    raise gone
                raise NotFound(f"no app is routed at {path!r}; deployed apps answer at /<app>/ "
                               "(see `skiff ls`)", code="app_not_found")
            match, app = routed
            throttled = platform.throttled(app.name)  # a budget's 429: a lookup in memory
            if throttled is not None:
                raise throttled
            method = scope["method"]
            if app.static is not None and method in ("GET", "HEAD"):
                if match.mount and path == match.mount:
                    q = scope.get("query_string", b"")
                    loc = (match.mount + "/" + ("?" + q.decode("latin-1") if q else "")).encode()
                    await self._reply(send, 308, [(b"location", loc), (b"content-length", b"0")],
                                      b"")
                    return
                f = app.static.lookup(match.path)
                if f is not None:
                    await self._static(send, f, inm, method, rid)
                    return
            machine = platform.machine_route(app.name, method, match.path or "/")
            if machine is not None:  # a state machine's http trigger, in the app's routes
                hold = self._bodies.hold(app.name)
                body = await self._body(receive, platform.config.max_body_bytes, hold)
                if body is None:
                    return
                started = await platform.start_routed(machine, body)
                await self._reply(send, 200, [(b"content-type", b"application/json"),
                                              (b"x-skiff-request-id", rid.encode())],
                                  _json.encode(started))
                return
            if not app.serves:
                raise NotFound(f"app {app.name} has no file at {match.path!r}", code="not_found")
            route_key, params = "$default", _NO_PARAMS
            if app.api_routes:  # before the body: an unrouted request needs none of it
                found = app.api_routes.match(method, match.path or "/")
                if not isinstance(found, RouteMatch):
                    await self._reply(send, *_unrouted(found, rid))
                    return
                route_key, params = found.route_key, found.params
            hold = self._bodies.hold(app.name)
            body = await self._body(receive, platform.config.max_body_bytes, hold)
            if body is None:
                return
            scheme = scope.get("scheme", "http")
            client = scope.get("client")
            req = p.HttpRequest(
                id=rid, method=method, path=match.path,
                query=scope.get("query_string", b"").decode("latin-1"),
                headers=_forwarded_headers(scope, scheme, client),
                body=body, scheme=scheme, host=host, client=client[0] if client else "",
                mount=match.mount, route_key=route_key, path_params=params,
                payload_format=app.payload_format)
            span = self.observe.tracing.http_span(method, app.name, path, traceparent)
            inv = Invocation.start(app.name, "http", req, timeout=app.timeout,
                                   traceparent=span.traceparent)
            if invocation_type is not None and invocation_type.lower() == "event":
                # accepted durably first, answered 202; retries and DLQ follow spec.async
                await platform.accept(inv)
                body = _json.encode({"invocation_id": rid, "status": "queued",
                                     "status_url": f"/_skiff/api/invocations/{rid}"})
                span.end(202)
                await self._reply(send, 202, [(b"content-type", b"application/json"),
                                              (b"x-skiff-request-id", rid.encode()),
                                              (RESPONSE_HEADER, span.traceparent.encode())], body)
                return
            resp = await platform.invoke(app, inv, stream=True)
            if isinstance(resp, Stream):
                try:
                    head = stream_head(app, resp, method, rid, lambda line: platform.log(
                        app, line, request_id=rid))
                except InvocationError:
                    resp.cancel("invalid_response")
                    raise
                head.append((RESPONSE_HEADER, span.traceparent.encode()))
                stream_span = span
                resp.closed.add_done_callback(
                    lambda closed: stream_span.end(resp.status, closed.result()))
                hold.release()
                await self._stream(send, receive, app, resp, head, method, rid)
                return
            answer = app_response(app, resp, method, rid, lambda line: platform.log(
                app, line, request_id=rid))
        except SkiffError as exc:
            status, headers, data = (failure_response(exc, app.kind, rid)
                                     if isinstance(exc, InvocationError)
                                     else error_response(exc, rid))
            if span is not None:
                span.end(status, exc.code)
                headers.append((RESPONSE_HEADER, span.traceparent.encode()))
            await self._reply(send, status, headers, data)
            return
        finally:
            if hold is not None:
                hold.release()
        span.end(answer[0])
        answer[1].append((RESPONSE_HEADER, span.traceparent.encode()))
        await self._reply(send, *answer)

    async def _stream(self, send: Send, receive: Receive, app: ServedApp, stream: Stream,
                      headers: list[tuple[bytes, bytes]], method: str, rid: str) -> None:
        """Pass a streamed body on as it comes, granting the instance credit for each
        part once the client's connection took it (uvicorn's send waits while its
        buffer is full). Cut, and the request cancelled in the instance, when the
        client goes away, the app sends nothing for SKIFF_STREAM_IDLE_TIMEOUT, or the
        stream outlasts SKIFF_STREAM_MAX_SECONDS; a cut response ends without its
        last chunk, so the client sees it incomplete."""
        config = self.platform.config
        idle, loop = config.stream_idle_timeout, asyncio.get_running_loop()
        deadline = loop.time() + config.stream_max_seconds
        bodiless = method == "HEAD" or stream.status in (204, 304)
        headers.append(self._node)
        await send({"type": "http.response.start", "status": stream.status, "headers": headers})
        gone = asyncio.ensure_future(_disconnected(receive))
        cut = None
        try:
            while cut is None:
                left = deadline - loop.time()
                read = asyncio.ensure_future(stream.read(max(0.0, min(idle, left))))
                await asyncio.wait((read, gone), return_when=asyncio.FIRST_COMPLETED)
                if not read.done() or gone.done():
                    read.cancel()
                    if read.done() and not read.cancelled():
                        read.exception()  # retrieved: the client is gone either way
                    cut = "client_disconnected"
                    break
                try:
                    part = read.result()
                except TimeoutError:
                    cut = "stream_idle_timeout" if left > idle else "stream_max_duration"
                    break
                except InvocationError as exc:  # the stream's own record says why
                    self.platform.log(app, f"stream cut after {stream.size} bytes: {exc.message}",
                                      request_id=rid)
                    return
                if part is None:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                if not bodiless:
                    await send({"type": "http.response.body", "body": part, "more_body": True})
                stream.ack(len(part))
        finally:
            gone.cancel()
            if cut is not None or not stream.closed.done():
                stream.cancel(cut or "client_disconnected")
        if cut != "client_disconnected":
            why = (f"no part for {idle:g}s (SKIFF_STREAM_IDLE_TIMEOUT)"
                   if cut == "stream_idle_timeout"
                   else f"over {config.stream_max_seconds:g}s (SKIFF_STREAM_MAX_SECONDS)")
            self.platform.log(app, f"stream cut after {stream.size} bytes: {why}", request_id=rid)

    async def _reply(self, send: Send, status: int, headers: list[tuple[bytes, bytes]],
                     body: bytes) -> None:
        headers.append(self._node)
        await _send(send, status, headers, body)

    async def _scrape(self, scope: Scope, send: Send) -> None:
        """``GET /metrics``: the Prometheus text exposition, made in a thread (a scrape
        reads the database for queue depths)."""
        from prometheus_client import CONTENT_TYPE_LATEST

        metrics, token = self.observe.metrics, self.observe.metrics_token
        rid = self.platform.new_request_id()
        try:
            if scope["method"] not in ("GET", "HEAD"):
                raise SkiffError("/metrics answers GET", code="method_not_allowed", status=405)
            if metrics is None:
                raise NotFound("metrics are off on this server (SKIFF_METRICS=0)",
                               code="metrics_off")
            if token:
                given = b""
                for k, v in scope["headers"]:
                    if k == b"authorization":
                        given = v.removeprefix(b"Bearer ").strip()
                if not hmac.compare_digest(given, token.encode()):
                    raise Unauthorized(_METRICS_UNAUTHORIZED)
        except SkiffError as exc:
            status, headers, data = error_response(exc, rid)
            if status == 401:
                headers.append((b"www-authenticate", b'Bearer realm="metrics"'))
            await _send(send, status, headers, data)
            return
        data = await asyncio.to_thread(metrics.exposition)
        await _send(send, 200, [(b"content-type", CONTENT_TYPE_LATEST.encode()),
                                (b"content-length", str(len(data)).encode())],
                    b"" if scope["method"] == "HEAD" else data)

    async def _static(self, send: Send, f: StaticFile, inm: str | None, method: str,
                      rid: str) -> None:
        headers = [(b"etag", f.etag.encode()), (b"cache-control", b"no-cache"),
                   (b"x-skiff-request-id", rid.encode()), self._node]
        if inm is not None and etag_matches(inm, f.etag):
            await _send(send, 304, headers, b"")
            return
        headers += [(b"content-type", f.content_type.encode()),
                    (b"content-length", str(f.size).encode())]
        if method == "HEAD":
            await _send(send, 200, headers, b"")
            return
        data = self.static_cache.get(f)
        if data is not None:
            await _send(send, 200, headers, data)
            return
        # too big to hold: stream it, in chunks read off the loop, up to the size announced
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        sent = 0
        while sent < f.size:
            try:
                chunk = await asyncio.to_thread(read_chunk, f.path, sent,
                                                min(STREAM_CHUNK, f.size - sent))
            except OSError:
                chunk = b""
            if not chunk:  # the file shrank or vanished: the length is promised, so cut here
                raise ConnectionAbortedError(f"static file {f.path} changed while being sent")
            sent += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": sent < f.size})

    @staticmethod
    async def _body(receive: Receive, limit: int, hold: _Hold) -> bytes | None:
        """The whole body, within ``limit``, every byte taken from the body budget
        (``hold``, released by the caller). None when the client went away."""
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":  # gone (or cut by the edge): invoke nothing
                return None
            chunk = msg.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes "
                                          "(SKIFF_MAX_BODY_BYTES)")
                hold.take(len(chunk))
                chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _forwarded_headers(scope: Scope, scheme: str, client: tuple | None) -> p.Headers:
    """The request's headers for the app, with the forwarding headers set by the
    gateway: what a client says about earlier hops (X-Forwarded-For: 6.6.6.6)
    counts only when it is a configured proxy; otherwise the app sees the real
    client, scheme and port, as behind API Gateway."""
    trusted = scope.get("skiff.via_proxy", False)
    headers: p.Headers = []
    chain = port = None
    for k, v in scope["headers"]:
        name = k.decode("latin-1")
        if name in _FORWARDING:
            if not trusted:
                continue
            if name == "x-forwarded-for":
                chain = v.decode("latin-1") if chain is None else f"{chain}, {v.decode('latin-1')}"
                continue
            if name == "x-forwarded-proto":
                continue  # uvicorn has resolved it into the scheme
            if name == "x-forwarded-port":
                port = v.decode("latin-1")
                continue
        headers.append((name, v.decode("latin-1")))
    if chain is None:
        chain = client[0] if client else ""
    if port is None:
        server = scope.get("server")
        port = str(server[1]) if server and server[1] else ("443" if scheme == "https" else "80")
        if trusted:  # the proxy's own port says nothing about the client's
            port = "443" if scheme == "https" else "80"
    headers += [("x-forwarded-for", chain), ("x-forwarded-proto", scheme),
                ("x-forwarded-port", port)]
    return headers
