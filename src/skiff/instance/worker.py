"""The instance side: runs in a process forked from a zygote.

It waits for a ``Load`` (a generic, pre-forked instance can sit here before any
app is assigned to it), imports the app, answers ``Ready``, then serves
invocations until the gateway closes the socket or sends ``Shutdown``.
Sync handlers (Lambda, WSGI) are served one at a time in a plain blocking loop,
the cheapest path there is; ASGI apps get an event loop and run concurrently.

A streamed response (ASGI ``more_body``, a WSGI generator) goes out as
ResponseStart and BodyChunk frames, each chunk only once the gateway's Credit
covers it (at most ``STREAM_WINDOW`` bytes unanswered), so an app writing faster
than its client reads waits inside its own send/yield. A Cancel stops the
request: the ASGI task is cancelled, the WSGI iterable closed. Ended tells the
gateway the call returned (its slot is free). A WebSocket (WsConnect, ASGI only)
is one more task of the loop, with the same window both ways
(skiff.runtime.websocket).
"""

from __future__ import annotations

import contextvars
import os
import resource
import select
import socket
import sys
import threading
import time
import traceback
from typing import Any

import msgspec

from skiff import ipc as p
from skiff.runtime import encode_result

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("skiff_request_id", default="")
# the platform's span this invocation runs under (skiff.sdk.traceparent reads it)
_traceparent: contextvars.ContextVar[str] = contextvars.ContextVar("skiff_traceparent", default="")


def current_traceparent() -> str:
    """The W3C ``traceparent`` of the invocation being served here, "" outside one."""
    return _traceparent.get()


class _Channel:
    """The instance's socket, shared by the serving loop and log writers."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, msg: msgspec.Struct) -> None:
        data = p.encode(msg)
        with self.lock:
            self.sock.sendall(data)


class _LogStream:
    """Replaces sys.stdout/sys.stderr: every line becomes a Log frame tagged with
    the request id being served, so `skiff logs` can show which request printed it."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, channel: _Channel, stream: str) -> None:
        self._channel = channel
        self._stream = stream
        self._buf = ""

    def write(self, s: str) -> int:
        self._buf += s
        if "\n" in self._buf:
            *lines, self._buf = self._buf.split("\n")
            rid = _request_id.get()
            for line in lines:
                self._channel.send(p.Log(request_id=rid, stream=self._stream, line=line))
        return len(s)

    def flush(self) -> None:
        if self._buf:
            line, self._buf = self._buf, ""
            self._channel.send(p.Log(request_id=_request_id.get(), stream=self._stream, line=line))

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        raise OSError("instance output is captured by Skiff")


class _Rpc:
    """Calls from app code to the platform over the instance socket.

    In the sync loop the handler owns the socket while it runs, so a call reads
    the reply itself (frames that are not its reply wait for the loop). In the
    async loop the reader task dispatches replies to waiting threads."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.channel: _Channel | None = None
        self.loop_thread: int | None = None  # set in async mode
        self.backlog: list[bytes] = []
        self.waiting: dict[int, Any] = {}
        self.ids = iter(range(1, 1 << 62))
        self.lock = threading.Lock()

    def call(self, op: str, args: dict) -> Any:
        if self.channel is None or self.sock is None:
            raise RuntimeError("skiff.sdk calls the platform, so it works inside an instance "
                               "(or under skiff.testing)")
        with self.lock:
            call_id = next(self.ids)
        if self.loop_thread is None:
            self.channel.send(p.Call(id=call_id, op=op, args=args, request_id=_request_id.get()))
            while True:
                frame = p.recv_frame(self.sock)
                if frame is None:
                    os._exit(0)
                msg = p.decode_to_instance(frame)
                if isinstance(msg, p.CallResult) and msg.id == call_id:
                    return msg
                self.backlog.append(frame)
        if threading.get_ident() == self.loop_thread:
            raise RuntimeError("skiff.sdk blocks: from async code call it through "
                               "`await asyncio.to_thread(...)`")
        import concurrent.futures

        fut: concurrent.futures.Future = concurrent.futures.Future()
        self.waiting[call_id] = fut
        self.channel.send(p.Call(id=call_id, op=op, args=args, request_id=_request_id.get()))
        try:
            return fut.result(timeout=60)
        finally:
            self.waiting.pop(call_id, None)

    def next_frame(self, sock: socket.socket) -> bytes | None:
        return self.backlog.pop(0) if self.backlog else p.recv_frame(sock)


rpc = _Rpc()


def _pieces(data: bytes) -> list[bytes]:
    step = p.STREAM_CHUNK
    return [data] if len(data) <= step else [data[i:i + step] for i in range(0, len(data), step)]


class _SyncStream:
    """A streamed response from the sync loop (WSGI): waiting for credit reads the
    socket; frames that are not this stream's wait in the backlog for the loop."""

    def __init__(self, sock: socket.socket, channel: _Channel, rid: str) -> None:
        self.sock, self.channel, self.rid = sock, channel, rid
        self.credit = p.STREAM_WINDOW
        self.started = False

    def start(self, status: int, headers: p.Headers) -> None:
        self.started = True
        self.channel.send(p.ResponseStart(id=self.rid, status=status, headers=headers))

    def chunk(self, data: bytes) -> None:
        for piece in _pieces(data):
            self._read(block=False)  # a Cancel is seen at the app's next yield
            while self.credit < len(piece):
                self._read(block=True)
            self.credit -= len(piece)
            self.channel.send(p.BodyChunk(id=self.rid, data=piece))

    def end(self) -> None:
        self.channel.send(p.BodyChunk(id=self.rid, more=False))

    def _read(self, block: bool) -> None:
        """Take this stream's Credit and Cancel frames: those a skiff.sdk call kept
        in the backlog, then what the socket has (waiting for one if ``block``)."""
        for i, frame in enumerate(rpc.backlog):
            msg = p.decode_to_instance(frame)
            if isinstance(msg, p.Credit | p.Cancel) and msg.id == self.rid:
                del rpc.backlog[i]
                self._take(msg)
                if block:
                    return
        while block or select.select([self.sock], [], [], 0)[0]:
            frame = p.recv_frame(self.sock)
            if frame is None:
                os._exit(0)
            msg = p.decode_to_instance(frame)
            if isinstance(msg, p.Credit | p.Cancel):
                if msg.id == self.rid:
                    self._take(msg)
                    if block:
                        return
                # another request's (it is over): stale, dropped
            else:
                rpc.backlog.append(frame)

    def _take(self, msg: p.Credit | p.Cancel) -> None:
        from skiff.runtime.streaming import StreamCancelled

        if isinstance(msg, p.Cancel):
            raise StreamCancelled(self.rid)
        self.credit += msg.size


class _AsyncStream:
    """A response from the ASGI loop. A whole one goes out at once, or, if the call
    has not returned by the loop's next turn (background tasks), marked running."""

    def __init__(self, send: Any, rid: str) -> None:
        import asyncio

        self.send, self.rid = send, rid
        self.credit = p.STREAM_WINDOW
        self.wake = asyncio.Event()
        self.sent = False  # a head (or a whole response) went out
        self.pending: p.Response | None = None
        self._flush: Any = None

    def complete(self, resp: p.Response) -> None:
        import asyncio

        self.pending = resp
        self._flush = asyncio.get_running_loop().call_soon(self._send_running)

    def _send_running(self) -> None:
        resp, self.pending = self.pending, None
        if resp is not None:
            resp.running = True
            self.sent = True
            self.send(resp)

    def returned(self) -> p.Response | None:
        """The call returned: its whole response if it has not gone yet."""
        if self.pending is not None:
            self._flush.cancel()
            resp, self.pending = self.pending, None
            return resp
        return None

    async def start(self, status: int, headers: p.Headers) -> None:
        self.sent = True
        self.send(p.ResponseStart(id=self.rid, status=status, headers=headers))

    async def chunk(self, data: bytes) -> None:
        for piece in _pieces(data):
            while self.credit < len(piece):
                self.wake.clear()
                await self.wake.wait()
            self.credit -= len(piece)
            self.send(p.BodyChunk(id=self.rid, data=piece))

    async def end(self) -> None:
        self.send(p.BodyChunk(id=self.rid, more=False))

    def grant(self, size: int) -> None:
        self.credit += size
        self.wake.set()


def _failure(rid: str, exc: BaseException) -> p.Failure:
    from skiff.runtime import BadResult, NotSupported

    if isinstance(exc, MemoryError):
        return p.Failure(id=rid, code="memory_limit", message="the app exceeded its memory limit")
    if isinstance(exc, BadResult):
        return p.Failure(id=rid, code="bad_result", message=str(exc))
    if isinstance(exc, NotSupported):
        return p.Failure(id=rid, code="not_supported", message=str(exc))
    tb = "".join(traceback.format_exception(exc)[-6:])
    return p.Failure(id=rid, code="handler_error",
                     message=f"{type(exc).__name__}: {exc}", traceback=tb)


def _limit_memory(memory_mb: int) -> None:
    """Fallback when no cgroup holds this instance: cap the address space at what
    the process maps now plus its memory budget."""
    with open("/proc/self/statm") as f:
        vm_pages = int(f.read().split()[0])
    limit = vm_pages * os.sysconf("SC_PAGE_SIZE") + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


_preinit: tuple[p.Load, Any] | None = None
_sandboxed = False


def mark_sandboxed() -> None:
    """The zygote applied the sandbox already (a pre-initialized app's)."""
    global _sandboxed
    _sandboxed = True


def _apply_env(load: p.Load) -> None:
    from skiff.runtime.environment import DEFAULTS, instance_environment

    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    os.environ.update(load.env)
    preinitialized = _preinit is not None and _preinit[0].revision == load.revision
    os.environ.update(instance_environment(
        app=load.app, revision=load.revision, handler=load.handler, code_dir=load.code_dir,
        memory_mb=load.memory_mb, region=load.region,
        initialization="snap-start" if preinitialized else "on-demand"))
    time.tzset()  # TZ may have just been set
    os.chdir(load.code_dir)


def preinit(load: p.Load) -> None:
    """In an app zygote: run the app's module init once, before any fork."""
    global _preinit
    from skiff.runtime import load_app

    _apply_env(load)
    _preinit = (load, load_app(load.code_dir, load.handler, load.kind))


def serve(sock: socket.socket) -> None:
    """Serve one instance socket until it closes. Never returns normally."""
    frame = p.recv_frame(sock)
    if frame is None:
        os._exit(0)
    load = p.decode_to_instance(frame)
    if not isinstance(load, p.Load):
        os._exit(2)
    channel = _Channel(sock)
    rpc.sock, rpc.channel = sock, channel
    t0 = time.perf_counter()
    plan = load.sandbox
    if plan is not None:
        from skiff.instance import sandbox

        try:
            if not _sandboxed:
                sandbox.apply(plan)
            if plan.egress_socket:
                sandbox.start_egress_relay(plan.egress_socket)
        except OSError as exc:
            channel.send(p.InitFailed(message=f"the sandbox could not be applied: {exc}"))
            os._exit(1)
    _apply_env(load)
    if os.environ.get("SKIFF_RLIMIT_MEMORY") == "1":
        _limit_memory(load.memory_mb)
    sys.stdout = _LogStream(channel, "stdout")  # type: ignore[assignment]
    sys.stderr = _LogStream(channel, "stderr")  # type: ignore[assignment]

    from skiff.runtime import InvokeContext, load_app
    from skiff.runtime.restore import restore

    try:
        if _preinit is not None and (_preinit[0].app, _preinit[0].revision) == (load.app, load.revision):
            app = _preinit[1]
            replaced = restore({sock.fileno(), 0, 1, 2})
            if replaced:
                print(f"skiff: {replaced} socket(s) opened during init were closed in this "
                      "instance; reopen them in an on_restore hook", file=sys.stderr)
        else:
            app = load_app(load.code_dir, load.handler, load.kind)
        if app.is_async:
            import asyncio

            loop = asyncio.new_event_loop()
            loop.run_until_complete(app.startup())
    except BaseException as exc:  # noqa: BLE001 - any init failure is reported, not raised
        summary = getattr(exc, "traceback_summary", "") or "".join(
            traceback.format_exception(exc)[-4:])
        from skiff.runtime import LoadError

        message = str(exc) if isinstance(exc, LoadError) else f"{type(exc).__name__}: {exc}"
        channel.send(p.InitFailed(message=message, traceback=summary))
        sys.stderr.flush()
        os._exit(1)
    init_ms = (time.perf_counter() - t0) * 1000
    channel.send(p.Ready(kind=app.kind, is_async=app.is_async, init_ms=init_ms, pid=os.getpid()))

    def context(rid: str, deadline_ms: float) -> InvokeContext:
        return InvokeContext(request_id=rid, app=load.app, revision=load.revision,
                             memory_mb=load.memory_mb, deadline_ms=deadline_ms)

    if app.is_async:
        _serve_async(loop, app, sock, channel, context)
    else:
        _serve_sync(app, sock, channel, context)
    os._exit(0)


def _call(app: Any, msg: p.HttpRequest | p.Event, ctx: Any,
          out: _SyncStream | None = None) -> msgspec.Struct:
    if isinstance(msg, p.HttpRequest):
        resp = app.handle_http(msg, ctx, out) if out is not None else app.handle_http(msg, ctx)
        if resp is None:  # streamed
            return p.Ended(id=msg.id)
        resp.id = msg.id
        return resp
    result = app.handle_event(msgspec.json.decode(msg.payload) if msg.payload else None, ctx)
    return p.Response(id=msg.id, status=200, headers=[("content-type", "application/json")],
                      body=encode_result(result))


def _serve_sync(app: Any, sock: socket.socket, channel: _Channel, context: Any) -> None:
    from skiff.runtime.streaming import StreamCancelled

    streams = app.kind == "wsgi"  # Lambda handlers return one result
    while True:
        frame = rpc.next_frame(sock)
        if frame is None:
            return
        msg = p.decode_to_instance(frame)
        if isinstance(msg, p.Shutdown):
            return
        if isinstance(msg, p.WsConnect):  # the gateway refuses these first; still, say so
            channel.send(p.Failure(id=msg.id, code="not_supported", message=(
                f"a {app.kind} app takes no WebSockets; they reach ASGI apps (kind: asgi)")))
            continue
        if not isinstance(msg, p.HttpRequest | p.Event):
            continue
        _request_id.set(msg.id)
        _traceparent.set(msg.traceparent)
        stream = _SyncStream(sock, channel, msg.id) if streams else None
        started = time.time_ns()
        try:
            out = _call(app, msg, context(msg.id, msg.deadline_ms), stream)
        except MemoryError as exc:
            channel.send(_failure(msg.id, exc))
            os._exit(137)
        except StreamCancelled:
            out = p.Ended(id=msg.id)
        except Exception as exc:  # noqa: BLE001 - reported to the caller as a 502
            out = _failure(msg.id, exc)  # after a head: the gateway cuts the stream
        sys.stdout.flush()
        sys.stderr.flush()
        if isinstance(out, p.Response | p.Failure):
            out.ran = (started, time.time_ns())
        channel.send(out)


def _serve_async(loop: Any, app: Any, sock: socket.socket, channel: _Channel,
                 context: Any) -> None:
    import asyncio

    from skiff.runtime.websocket import WsSession
    from skiff.runtime.websocket import serve as serve_websocket

    streams: dict[str, _AsyncStream] = {}
    sockets: dict[str, WsSession] = {}
    by_id: dict[str, asyncio.Task] = {}

    async def handle_websocket(msg: p.WsConnect) -> None:
        _request_id.set(msg.id)
        _traceparent.set(msg.traceparent)
        session = sockets[msg.id] = WsSession(msg, channel.send)
        out: msgspec.Struct = p.Ended(id=msg.id)
        try:
            await serve_websocket(app.target, msg, session, app.state)
            session.returned()
        except MemoryError as exc:
            channel.send(_failure(msg.id, exc))
            os._exit(137)
        except asyncio.CancelledError:  # the gateway's Cancel
            pass
        except Exception as exc:  # noqa: BLE001 - after the handshake: the gateway closes 1011
            if session.state != "connecting":
                traceback.print_exc()
            out = _failure(msg.id, exc)
        finally:
            sockets.pop(msg.id, None)
            by_id.pop(msg.id, None)
        channel.send(out)

    async def handle(msg: p.HttpRequest | p.Event) -> None:
        _request_id.set(msg.id)
        _traceparent.set(msg.traceparent)
        out: msgspec.Struct
        started = time.time_ns()
        try:
            if isinstance(msg, p.HttpRequest):
                stream = streams[msg.id] = _AsyncStream(channel.send, msg.id)
                try:
                    await app.ahandle_http(msg, context(msg.id, msg.deadline_ms), stream)
                finally:
                    whole = stream.returned()
                out = whole if whole is not None else p.Ended(id=msg.id)
            else:
                out = _call(app, msg, context(msg.id, msg.deadline_ms))
        except MemoryError as exc:
            channel.send(_failure(msg.id, exc))
            os._exit(137)
        except asyncio.CancelledError:  # the gateway's Cancel
            out = p.Ended(id=msg.id)
        except Exception as exc:  # noqa: BLE001 - after a head: the gateway cuts the stream
            out = _failure(msg.id, exc)
        finally:
            streams.pop(msg.id, None)
            by_id.pop(msg.id, None)
        if isinstance(out, p.Response | p.Failure):
            out.ran = (started, time.time_ns())
        channel.send(out)

    async def main() -> None:
        sock.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        loop_thread = threading.get_ident()

        def send(msg: msgspec.Struct) -> None:
            data = p.encode(msg)
            if threading.get_ident() == loop_thread:
                writer.write(data)
            else:  # a log line printed from an app's own thread
                loop.call_soon_threadsafe(writer.write, data)

        channel.send = send  # type: ignore[method-assign]
        rpc.loop_thread = loop_thread
        tasks: set[asyncio.Task] = set()
        while True:
            try:
                head = await reader.readexactly(4)
                body = await reader.readexactly(int.from_bytes(head, "big"))
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            msg = p.decode_to_instance(body)
            if isinstance(msg, p.CallResult):
                fut = rpc.waiting.get(msg.id)
                if fut is not None:
                    fut.set_result(msg)
                continue
            if isinstance(msg, p.Credit):
                stream = streams.get(msg.id)
                if stream is not None:
                    stream.grant(msg.size)
                elif (session := sockets.get(msg.id)) is not None:
                    session.grant(msg.size)
                continue
            if isinstance(msg, p.WsMessage | p.WsClose):
                session = sockets.get(msg.id)
                if session is not None:
                    session.feed(msg)
                continue
            if isinstance(msg, p.WsConnect):
                task = by_id[msg.id] = asyncio.ensure_future(handle_websocket(msg))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                continue
            if isinstance(msg, p.Cancel):
                running = by_id.get(msg.id)
                if running is not None:
                    running.cancel()
                continue
            if isinstance(msg, p.Shutdown):
                break
            if isinstance(msg, p.HttpRequest | p.Event):
                task = by_id[msg.id] = asyncio.ensure_future(handle(msg))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await app.shutdown()
        await writer.drain()

    loop.run_until_complete(main())
