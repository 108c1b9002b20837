"""Frames between the gateway and an instance: a 4-byte big-endian length, then
one msgpack-encoded message (msgspec tagged union).

The conversation on one instance socket::

    gateway                         instance
    Load  ───────────────────────▶  (imports the app)
          ◀───────────────────────  Ready | InitFailed
    HttpRequest | Event ─────────▶
          ◀───────────────────────  Log* then Response | Failure   (matched by id)
          ◀───────────────────────  or ResponseStart, BodyChunk*   (a streamed body)
    Credit ──────────────────────▶  (the gateway sent that many bytes on: send more)
    Cancel ──────────────────────▶  (stop this request: client gone, a stream limit)
          ◀───────────────────────  Ended    (the call returned, after a streamed
                                              response or a Response with running)
          ◀───────────────────────  Call     (skiff.sdk, while handling)
    WsConnect ───────────────────▶  (a WebSocket handshake, for an ASGI app)
          ◀───────────────────────  WsAccept | WsClose (refused) | Failure
    WsMessage, WsClose ──────────▶  (from the client; the instance answers Credit)
          ◀───────────────────────  WsMessage, WsClose (from the app; Credit answers)
          ◀───────────────────────  Ended    (the app's call returned: its slot is free)
    CallResult ──────────────────▶
    Shutdown ────────────────────▶  (exits 0)

A leaf module: the gateway side (``instance/``) and the code inside an instance
(``runtime/``) both import it, so neither imports the other.

Msgpack via msgspec because it is the fastest safe codec measured here for small
frames (~50 µs round trip over a unix socket).
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import msgspec

Headers = list[tuple[str, str]]


class Plan(msgspec.Struct, frozen=True):
    """What to apply, decided by the platform (it knows the paths and the level)."""

    uid: int = 0
    gid: int = 0
    drop_privileges: bool = False
    mount_ns: bool = False  # a minimal root of its own (mount namespace + pivot_root)
    binds: tuple[str, ...] = ()  # host paths visible read-only, at the same path
    writable: tuple[str, ...] = ()  # host paths visible read-write (cgroup dirs of a zygote)
    data_dir: str = ""  # the app's data directory (SKIFF_DATA_DIR), read-write at this path
    data_device: str = ""  # ...a quota'd volume: this block device's file system mounted there
    hide: tuple[str, ...] = ()  # covered by an empty tmpfs should a bind contain them
    tmp_mb: int = 64
    seccomp: bool = False
    egress_socket: str = ""  # unix socket of this app's egress proxy


class Load(msgspec.Struct, tag="load"):
    app: str
    revision: str
    code_dir: str
    handler: str | None
    kind: str | None
    env: dict[str, str] = {}
    memory_mb: int = 256
    cpu: float = 1.0
    max_pids: int = 64
    sandbox: Plan | None = None
    region: str = "us-east-1"  # AWS_REGION of the instance (SKIFF_AWS_REGION)


class Ready(msgspec.Struct, tag="ready"):
    kind: str
    is_async: bool
    init_ms: float
    pid: int


class InitFailed(msgspec.Struct, tag="init_failed"):
    message: str
    traceback: str = ""


class HttpRequest(msgspec.Struct, tag="http"):
    """One HTTP request, already routed: ``path`` is relative to the app's mount."""

    id: str
    method: str
    path: str
    query: str = ""
    headers: Headers = []
    body: bytes = b""
    scheme: str = "http"
    host: str = ""
    client: str = ""
    mount: str = ""
    route_key: str = "$default"
    deadline_ms: float = 0.0
    payload_format: str = "2.0"  # of a Lambda handler's event: "2.0" HTTP API, "1.0" REST API
    path_params: dict[str, str] = {}  # bound by the app's spec.http.routes (route_key)
    traceparent: str = ""  # W3C: the platform's span that this invocation runs under


class Event(msgspec.Struct, tag="event"):
    """A direct invocation with a JSON payload (``skiff invoke``, async, queues)."""

    id: str
    payload: bytes
    deadline_ms: float = 0.0
    traceparent: str = ""  # W3C: the platform's span that this invocation runs under


class Response(msgspec.Struct, tag="response"):
    id: str
    status: int = 200
    headers: Headers = []
    body: bytes = b""
    # the call goes on after its response (ASGI background tasks): an Ended follows
    running: bool = False
    # (start, end) of the handler's run, time.time_ns() in the instance: the gateway's
    # handler span (an app's word: clamped to when the gateway sent and got the frames)
    ran: tuple[int, int] | None = None


class ResponseStart(msgspec.Struct, tag="response_start"):
    """The head of a streamed response; BodyChunk frames carry its body."""

    id: str
    status: int = 200
    headers: Headers = []


class BodyChunk(msgspec.Struct, tag="body_chunk"):
    """Part of a streamed body. ``more=False`` ends the body (an Ended follows when
    the call returns). An instance never has more than STREAM_WINDOW bytes of one
    stream sent and not yet answered by Credit."""

    id: str
    data: bytes = b""
    more: bool = True


class Ended(msgspec.Struct, tag="ended"):
    """The call of a streamed (or ``running``) response returned: its slot is free."""

    id: str


class Credit(msgspec.Struct, tag="credit"):
    """The gateway passed ``size`` more bytes of the stream (or WebSocket) ``id`` on to
    its client; from an instance: its app received ``size`` more bytes of the
    WebSocket's messages."""

    id: str
    size: int


class Cancel(msgspec.Struct, tag="cancel"):
    """Stop handling ``id`` (its client went away, or a limit of its stream was hit)."""

    id: str


class WsConnect(msgspec.Struct, tag="ws_connect"):
    """A WebSocket handshake, already routed: ``path`` is relative to the app's mount.
    ``max_message`` is the largest message either side may send (bytes)."""

    id: str
    path: str
    query: str = ""
    headers: Headers = []
    scheme: str = "ws"
    host: str = ""
    client: str = ""
    mount: str = ""
    subprotocols: list[str] = []
    max_message: int = 1 << 20
    deadline_ms: float = 0.0
    traceparent: str = ""


class WsAccept(msgspec.Struct, tag="ws_accept"):
    """The app accepted the connection; frames may follow both ways."""

    id: str
    subprotocol: str | None = None
    headers: Headers = []


class WsMessage(msgspec.Struct, tag="ws_message"):
    """One whole message, either way; ``text`` messages are UTF-8 in ``data``. Either
    side has at most STREAM_WINDOW bytes of messages sent and not yet answered by
    Credit (each costing its bytes and WS_MESSAGE_OVERHEAD), plus the one message that
    crossed it."""

    id: str
    data: bytes = b""
    text: bool = False


class WsClose(msgspec.Struct, tag="ws_close"):
    """A close, either way. From the instance before WsAccept: the app refused the
    connection."""

    id: str
    code: int = 1000
    reason: str = ""


class Failure(msgspec.Struct, tag="failure"):
    id: str
    code: str  # handler_error | bad_result | memory_limit | not_supported
    message: str
    traceback: str = ""
    ran: tuple[int, int] | None = None  # as Response.ran


class Log(msgspec.Struct, tag="log"):
    request_id: str
    stream: str
    line: str


class Shutdown(msgspec.Struct, tag="shutdown"):
    pass


class Call(msgspec.Struct, tag="call"):
    """The app asks the platform for something (``skiff.sdk``: KV, queues, events).
    The platform, not the app, decides which app is asking: the socket says so."""

    id: int
    op: str
    args: dict[str, Any] = {}
    # the request it was made for (its sdk span's parent, if the instance serves it)
    request_id: str = ""


class CallResult(msgspec.Struct, tag="call_result"):
    id: int
    ok: bool = True
    value: Any = None
    code: str = ""
    message: str = ""
    status: int = 0


ToInstance = (Load | HttpRequest | Event | Shutdown | CallResult | Credit | Cancel | WsConnect
              | WsMessage | WsClose)
# Credit both ways: the instance answers WebSocket messages its app has received
FromInstance = (Ready | InitFailed | Response | Failure | Log | Call | ResponseStart | BodyChunk
                | Ended | WsAccept | WsMessage | WsClose | Credit)

# Back-pressure of a streamed body: bytes an instance may have sent and the gateway
# not yet passed on. 256 KiB keeps a fast stream moving (four 64 KiB chunks in
# flight) while a slow client makes the gateway hold at most this per stream.
STREAM_WINDOW = 256 * 1024
STREAM_CHUNK = 64 * 1024  # the largest BodyChunk an instance sends (bigger bodies are split)
# What one WebSocket message costs of the window besides its bytes: without it a flood
# of empty messages would take no credit, and the side not reading would queue them
# without bound (4,096 empty messages fill a window).
WS_MESSAGE_OVERHEAD = 64


def ws_cost(data: bytes) -> int:
    """The credit one WebSocket message takes (both sides count it the same)."""
    return len(data) + WS_MESSAGE_OVERHEAD

_encoder = msgspec.msgpack.Encoder()
_to_instance = msgspec.msgpack.Decoder(ToInstance)
_from_instance = msgspec.msgpack.Decoder(FromInstance)
_len = struct.Struct(">I")


def encode(msg: msgspec.Struct) -> bytes:
    body = _encoder.encode(msg)
    return _len.pack(len(body)) + body


def decode_to_instance(body: bytes) -> ToInstance:
    return _to_instance.decode(body)


def decode_from_instance(body: bytes) -> FromInstance:
    return _from_instance.decode(body)


def recv_frame(sock: socket.socket) -> bytes | None:
    """Blocking read of one frame; None when the peer closed the socket."""
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    (n,) = _len.unpack(head)
    return _recv_exact(sock, n)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            return None
        got += k
    return bytes(buf)
