"""ASGI 3 apps (FastAPI, Starlette, Quart, Django's ASGIHandler, ...).

One request is one ``http`` scope whose ``path`` includes the mount and whose
``root_path`` is the mount: current Starlette routes on ``path`` minus
``root_path``, and builds URLs from both. A response the app sends in one
``http.response.body`` goes out as one frame, as soon as it is complete (the
app's background tasks run after it); one sent in several parts streams through
the responder the worker gives (``more_body`` is the signal).

Lifespan follows uvicorn's "auto" mode: an app that raises on the lifespan
scope before finishing startup is taken as not supporting it.
"""

from __future__ import annotations

import asyncio
import traceback
from urllib.parse import quote

from skiff.ipc import HttpRequest, Response

from ._host import split_host
from .context import InvokeContext
from .exceptions import LoadError
from .loaded import LoadedApp
from .streaming import AsyncResponder

_HTTP_ASGI = {"version": "3.0", "spec_version": "2.3"}
_LIFESPAN_ASGI = {"version": "3.0", "spec_version": "2.0"}


def build_scope(req: HttpRequest, state: dict | None = None) -> dict:
    path = req.mount + req.path or "/"
    host = req.host
    return {
        "type": "http",
        "asgi": _HTTP_ASGI,
        "http_version": "1.1",
        "method": req.method,
        "scheme": req.scheme,
        "path": path,
        "raw_path": path.encode("ascii") if path.isascii() else quote(path).encode("ascii"),
        "root_path": req.mount,
        "query_string": _latin1(req.query),
        "headers": [(name.encode("latin-1"), _latin1(value)) for name, value in req.headers],
        "client": (req.client, 0) if req.client else None,
        "server": split_host(host, req.scheme) if host else None,
        # Lifespan state is shared with each request as a shallow copy (ASGI spec).
        "state": state.copy() if state else {},
    }


def _latin1(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


class _Exchange:
    """receive/send for one request. The body is delivered once; a second
    receive waits until the response is complete, then reports a disconnect."""

    __slots__ = ("body", "status", "headers", "chunks", "complete", "streaming", "out", "rid",
                 "_sent_body", "_done")

    def __init__(self, body: bytes, out: AsyncResponder | None = None, rid: str = "") -> None:
        self.body = body
        self.status: int | None = None
        self.headers: list = []
        self.chunks: list[bytes] = []
        self.complete = False
        self.streaming = False  # the head went out; the body follows in parts
        self.out = out
        self.rid = rid
        self._sent_body = False
        self._done: asyncio.Future | None = None  # created only if someone waits

    async def receive(self) -> dict:
        if not self._sent_body:
            self._sent_body = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        if not self.complete:
            if self._done is None:
                self._done = asyncio.get_running_loop().create_future()
            await self._done
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if self.status is None:
                raise RuntimeError("ASGI app sent http.response.body before http.response.start")
            if self.complete:
                raise RuntimeError("ASGI app sent http.response.body after the response completed")
            body = message.get("body")
            more = message.get("more_body", False)
            out = self.out
            if out is not None and (more or self.streaming):
                if not self.streaming:
                    self.streaming = True
                    await out.start(self.status, _headers(self.headers))
                    for early in self.chunks:
                        await out.chunk(early)
                    self.chunks.clear()
                if body:
                    await out.chunk(body)
                if not more:
                    await out.end()
            elif body:
                self.chunks.append(body)
            if not more:
                self.complete = True
                if out is not None and not self.streaming:
                    out.complete(self.response())
                if self._done is not None and not self._done.done():
                    self._done.set_result(None)
        elif kind == "http.response.start":
            if self.status is not None:
                raise RuntimeError("ASGI app sent http.response.start twice")
            self.status = int(message["status"])
            self.headers = message.get("headers") or []
        # Other messages (trailers, debug) carry nothing we forward.

    def response(self) -> Response:
        return Response(id=self.rid, status=self.status or 500, headers=_headers(self.headers),
                        body=b"".join(self.chunks))


def _headers(raw: list) -> list[tuple[str, str]]:
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw]


class AsgiApp(LoadedApp):
    kind = "asgi"
    is_async = True
    default_concurrency = 64

    def __init__(self, target: object) -> None:
        super().__init__(target)
        self.state: dict = {}
        self.lifespan_supported: bool | None = None  # None until startup() ran
        self._task: asyncio.Task | None = None
        self._inbox: asyncio.Queue | None = None
        self._started: asyncio.Future | None = None
        self._stopped: asyncio.Future | None = None

    async def ahandle_http(self, req: HttpRequest, ctx: InvokeContext,
                           out: AsyncResponder | None = None) -> Response | None:
        """The app's response; None when it went through ``out`` (whole, as soon as
        it was complete, or streamed)."""
        exchange = _Exchange(req.body, out, req.id)
        try:
            await self.target(build_scope(req, self.state), exchange.receive, exchange.send)
        except Exception:
            if not exchange.complete:
                raise
            # The response went out whole (e.g. Starlette's 500 page, which re-raises):
            # like uvicorn, keep it and log the error.
            traceback.print_exc()
        if not exchange.complete:
            what = "starting" if exchange.status is None else "completing"
            raise RuntimeError(f"ASGI app returned without {what} a response")
        return None if out is not None else exchange.response()

    async def startup(self) -> None:
        """Start the lifespan protocol and wait for startup to finish. Raises
        LoadError when the app reports ``lifespan.startup.failed``."""
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()
        self._started = loop.create_future()
        self._stopped = loop.create_future()
        self._inbox.put_nowait({"type": "lifespan.startup"})
        self._task = loop.create_task(self._run_lifespan())
        await self._started

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the app to finish it."""
        task = self._task
        if task is None:
            return
        if self.lifespan_supported and not task.done():
            self._inbox.put_nowait({"type": "lifespan.shutdown"})
            try:
                await self._stopped
            except Exception:
                traceback.print_exc()
        if not task.done():  # done with the protocol; whatever the app does next is moot
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _run_lifespan(self) -> None:
        scope = {"type": "lifespan", "asgi": _LIFESPAN_ASGI, "state": self.state}
        try:
            await self.target(scope, self._inbox.get, self._lifespan_send)
        except Exception:
            if self._started.done():
                traceback.print_exc()
        finally:
            if not self._started.done():  # raised or returned before startup: no lifespan
                self.lifespan_supported = False
            for fut in (self._started, self._stopped):
                if not fut.done():
                    fut.set_result(None)

    async def _lifespan_send(self, message: dict) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self.lifespan_supported = True
            self._started.set_result(None)
        elif kind == "lifespan.startup.failed":
            self.lifespan_supported = True
            text = message.get("message") or ""
            last = text.strip().splitlines()[-1] if text.strip() else "no message"
            self._started.set_exception(LoadError(f"ASGI lifespan startup failed: {last}", text))
        elif kind == "lifespan.shutdown.complete":
            self._stopped.set_result(None)
        elif kind == "lifespan.shutdown.failed":
            self._stopped.set_exception(
                RuntimeError(f"ASGI lifespan shutdown failed: {message.get('message', '')}"))
