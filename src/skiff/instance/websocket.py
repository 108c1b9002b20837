"""The gateway's handle on one WebSocket connection an instance serves.

What the gateway holds for it is capped whatever the app does: messages from the
app wait here only until the gateway's client took them (``ack`` grants the
instance that much credit, STREAM_WINDOW bytes at most outstanding plus the
message that crossed it: more and the instance broke the protocol and is
stopped); messages to the app go only while the instance has credit left (its
app received the earlier ones), so a client cannot push past an app that does
not read. A message over ``max_message`` from the app closes the connection
with 1009 and is dropped; the instance goes on serving its other requests.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from skiff import ipc as p
from skiff.errors import InvocationError

if TYPE_CHECKING:
    from skiff.instance.supervisor import Instance

# After the gateway closed a connection (its client left, an idle timeout), the app
# has this long to return before its call is cancelled (CANCEL_GRACE follows).
CLOSE_GRACE = 5.0  # seconds
MESSAGE_TOO_BIG = 1009


class ProtocolBroken(Exception):
    """The instance sent more than its window: the supervisor stops it whole."""


class WebSocket:
    """One connection: ``accepted`` (else the app refused it: ``refusal`` has its close)."""

    def __init__(self, inst: Instance, rid: str, max_message: int,
                 accept: p.WsAccept | None, refusal: p.WsClose | None = None) -> None:
        self.id = rid
        self.max_message = max_message
        self.accepted = accept is not None
        self.subprotocol = accept.subprotocol if accept is not None else None
        self.headers: p.Headers = accept.headers if accept is not None else []
        self.refusal = refusal
        self.status = 101  # for the invocation record
        self.size = 0  # bytes of messages from the app
        self.size_cut = False  # closed for a message over max_message
        # done when the gateway is through with it: None (a clean close) or an error code
        self.closed: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.error: InvocationError | None = None  # the call failed, or the instance died
        self.returned = False  # the app's call returned
        self._inst = inst
        self._inbox: deque[p.WsMessage | p.WsClose] = deque()
        self._wake = asyncio.Event()
        self._unacked = 0  # bytes from the app not yet passed on
        self._credit = p.STREAM_WINDOW  # bytes the gateway may still send the app
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed_to_app = False
        self._timer: asyncio.TimerHandle | None = None

    # -- the app's side, fed by the supervisor's read loop ----------------------------
    def _feed(self, msg: p.WsMessage | p.WsClose | p.Credit) -> None:
        if isinstance(msg, p.Credit):
            self._credit = min(p.STREAM_WINDOW, self._credit + max(0, msg.size))
            if self._credit > 0:
                self._writable.set()
            return
        if isinstance(msg, p.WsMessage):
            if self._unacked >= p.STREAM_WINDOW:
                raise ProtocolBroken(f"it sent {self._unacked} bytes of WebSocket messages "
                                     f"unacknowledged; the window is {p.STREAM_WINDOW}")
            self._unacked += p.ws_cost(msg.data)
            if len(msg.data) > self.max_message:
                self.size_cut = True
                self._inbox.append(p.WsClose(id=self.id, code=MESSAGE_TOO_BIG,
                                             reason="message too big"))
                self.close(MESSAGE_TOO_BIG, "message too big")
                self._wake.set()
                return
        if self._closed_to_app and isinstance(msg, p.WsMessage):
            return  # past the close: dropped
        self._inbox.append(msg)
        self._wake.set()

    def _ended(self, err: InvocationError | None) -> None:
        """The call returned (``err``: it failed, or the instance is gone)."""
        self.returned = True
        if err is not None and self.error is None:
            self.error = err
            # a failed call's (or dead instance's) unsent messages are dropped: the client
            # gets its close now (the app's own, if it closed before it failed, else 1011)
            closes = [m for m in self._inbox if isinstance(m, p.WsClose)][:1]
            self._inbox = deque(closes)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._closed_to_app = True
        self._wake.set()
        self._writable.set()

    # -- the gateway's side ---------------------------------------------------------
    async def read(self, timeout: float | None) -> p.WsMessage | p.WsClose | None:
        """The app's next message or close; None once its call returned without one.
        Raises the InvocationError the call ended with, TimeoutError when idle."""
        while not self._inbox:
            if self.error is not None:
                raise self.error
            if self.returned:
                return None
            self._wake.clear()
            if timeout is None:  # the gateway's reader: no timer task per message
                await self._wake.wait()
            else:
                await asyncio.wait_for(self._wake.wait(), timeout)
        return self._inbox.popleft()

    def ack(self, data: bytes) -> None:
        """The app's message ``data`` went to the client."""
        cost = p.ws_cost(data)
        self._unacked = max(0, self._unacked - cost)
        self.size += len(data)
        if not self.returned:
            self._inst._send(p.Credit(id=self.id, size=cost))

    async def send(self, data: bytes, text: bool) -> bool:
        """Pass a client's message to the app once the instance has credit for it;
        False if the app's side is closed (the message is dropped)."""
        while self._credit <= 0 and not self._closed_to_app:
            self._writable.clear()
            await self._writable.wait()
        if self._closed_to_app or self.returned:
            return False
        self._credit -= p.ws_cost(data)
        await self._inst.send_drained(p.WsMessage(id=self.id, data=data, text=text))
        return True

    def close(self, code: int, reason: str = "") -> None:
        """Tell the app the connection is closed; its call gets CLOSE_GRACE to return,
        then is cancelled (and its instance stopped only if it ignores that)."""
        if self._closed_to_app:
            return
        self._closed_to_app = True
        self._writable.set()
        if self.returned:
            return
        self._inst._send(p.WsClose(id=self.id, code=code, reason=reason[:120]))
        self._timer = asyncio.get_running_loop().call_later(CLOSE_GRACE, self._overdue)

    def _overdue(self) -> None:
        self._timer = None
        if not self.returned:
            self._inst.cancel(self.id)

    def finish(self, code: str | None) -> None:
        """The gateway is through with the connection (``code``: why it was cut)."""
        if not self.closed.done():
            self.closed.set_result(code)
