"""One WebSocket connection of an ASGI app, inside the instance: the ``websocket``
scope and its receive/send, turned into ipc Ws* frames.

Back-pressure both ways reuses the streaming window: the app's ``send`` waits
while STREAM_WINDOW bytes of its messages are out and not yet answered by the
gateway's Credit (its client has not taken them); each message the app
``receive``s is answered with a Credit (each message costs its bytes and
WS_MESSAGE_OVERHEAD), so a client cannot push more than the
window past an app that does not read. A message over the connection's
``max_message`` is refused in ``send``: the connection closes with 1009 (the
gateway checks the size again: this code runs beside the app's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from skiff import ipc as p

from ._host import split_host

_WS_ASGI = {"version": "3.0", "spec_version": "2.3"}
MESSAGE_TOO_BIG = 1009  # RFC 6455


class ClientDisconnected(OSError):
    """``send`` on a connection that is closed (as uvicorn raises it: an OSError, which
    Starlette's WebSocket turns into WebSocketDisconnect)."""


def build_scope(req: p.WsConnect, state: dict | None = None) -> dict:
    path = req.mount + req.path or "/"
    return {
        "type": "websocket",
        "asgi": _WS_ASGI,
        "http_version": "1.1",
        "scheme": req.scheme,
        "path": path,
        "raw_path": path.encode("ascii") if path.isascii() else quote(path).encode("ascii"),
        "root_path": req.mount,
        "query_string": req.query.encode("latin-1", "replace"),
        "headers": [(k.encode("latin-1", "replace"), v.encode("latin-1", "replace"))
                    for k, v in req.headers],
        "client": (req.client, 0) if req.client else None,
        "server": split_host(req.host, "https" if req.scheme == "wss" else "http")
        if req.host else None,
        "subprotocols": list(req.subprotocols),
        "state": state.copy() if state else {},
    }


class WsSession:
    """receive/send of one connection; ``send_frame`` writes to the instance socket."""

    def __init__(self, req: p.WsConnect, send_frame: Callable[[Any], None]) -> None:
        self.id = req.id
        self.max_message = req.max_message
        self._send_frame = send_frame
        self.state = "connecting"  # -> open -> closed
        self._connect_sent = False
        self._inbox: asyncio.Queue[dict] = asyncio.Queue()
        self._credit = p.STREAM_WINDOW
        self._wake = asyncio.Event()
        self._disconnect: dict | None = None

    # -- frames from the gateway --------------------------------------------------
    def feed(self, msg: p.WsMessage | p.WsClose) -> None:
        if self._disconnect is not None:
            return
        if isinstance(msg, p.WsClose):
            self._disconnect = {"type": "websocket.disconnect", "code": msg.code,
                                "reason": msg.reason}
            self.state = "closed"
            self._inbox.put_nowait(self._disconnect)
            self._wake.set()  # a send waiting for credit learns the connection is gone
            return
        if msg.text:
            event = {"type": "websocket.receive", "text": msg.data.decode("utf-8", "replace")}
        else:
            event = {"type": "websocket.receive", "bytes": msg.data}
        event["_size"] = p.ws_cost(msg.data)
        self._inbox.put_nowait(event)

    def grant(self, size: int) -> None:
        self._credit += size
        self._wake.set()

    # -- the app's receive/send ----------------------------------------------------
    async def receive(self) -> dict:
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        if self._disconnect is not None and self._inbox.empty():
            return self._disconnect
        event = await self._inbox.get()
        size = event.pop("_size", None)
        if size is not None:
            self._send_frame(p.Credit(id=self.id, size=size))
        return event

    async def send(self, message: dict) -> None:
        kind = message["type"]
        if self.state == "connecting":
            if kind == "websocket.accept":
                self.state = "open"
                headers = [(k.decode("latin-1"), v.decode("latin-1"))
                           for k, v in message.get("headers") or []]
                self._send_frame(p.WsAccept(id=self.id, subprotocol=message.get("subprotocol"),
                                            headers=headers))
            elif kind == "websocket.close":
                self.state = "closed"
                self._send_frame(p.WsClose(id=self.id, code=int(message.get("code", 1000)),
                                           reason=message.get("reason") or ""))
            else:
                raise RuntimeError(f"ASGI app sent {kind!r} before websocket.accept")
            return
        if self.state == "closed":
            raise ClientDisconnected(f"the WebSocket is closed; {kind} was not sent")
        if kind == "websocket.send":
            text = message.get("text")
            data = message.get("bytes")
            if data is None:
                data = (text or "").encode()
            if len(data) > self.max_message:
                self.close(MESSAGE_TOO_BIG, "message too big")
                raise ClientDisconnected(
                    f"a WebSocket message of {len(data)} bytes is over the limit of "
                    f"{self.max_message} (SKIFF_WS_MAX_MESSAGE_BYTES); the connection was closed")
            while self._credit <= 0 and self.state == "open":
                self._wake.clear()
                await self._wake.wait()
            if self.state != "open":
                raise ClientDisconnected("the WebSocket closed while the app was sending")
            self._credit -= p.ws_cost(data)
            self._send_frame(p.WsMessage(id=self.id, data=data, text=message.get("bytes") is None))
        elif kind == "websocket.close":
            self.close(int(message.get("code", 1000)), message.get("reason") or "")
        else:
            raise RuntimeError(f"ASGI app sent {kind!r} on an open WebSocket")

    def close(self, code: int, reason: str) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        self._send_frame(p.WsClose(id=self.id, code=code, reason=reason))
        self._wake.set()
        if self._disconnect is None:
            # what the app reads after its own close (ASGI: the server's disconnect)
            self._disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self._inbox.put_nowait(self._disconnect)

    def returned(self) -> None:
        """The app's call returned: a connection it left open is closed (1000), one it
        never accepted is refused."""
        if self.state == "connecting":
            self.state = "closed"
            self._send_frame(p.WsClose(id=self.id, code=1006, reason=""))
        elif self.state == "open":
            self.close(1000, "")


async def serve(target: Any, req: p.WsConnect, session: WsSession, state: dict) -> None:
    """Run the app on the connection's scope until it returns."""
    await target(build_scope(req, state), session.receive, session.send)
