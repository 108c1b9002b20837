"""The HTTP edge: uvicorn's httptools protocol with the limits an open port needs.

Threat model: any client that can reach the port, unauthenticated, sending
bytes slowly, many at once, or never finishing a request. What one client may
make the gateway hold is bounded:

* a request head (request line and headers) is at most ``max_header_bytes`` and
  ``MAX_HEADERS`` fields, else 431 (uvicorn with httptools has no limit: 8
  connections sending 60 MiB of headers took ~470 MB);
* a head must arrive within ``header_timeout`` of the connection being ready for
  it (after connect, or after the previous response), else 408 and close; a
  request body that stops arriving for as long is cut the same way;
* at most ``max_connections`` connections (below the open-files limit, which
  instances, the egress proxy and the databases share). At the cap, a new
  connection sheds the oldest connection that has not finished a request head
  (slowloris holds exactly those); when every connection is inside a request, a
  few more are let in for the admin API only (503 for other paths), so
  ``/_skiff/api/health`` and the operator always get an answer.
"""

from __future__ import annotations

import asyncio
import json
import resource
import uuid
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

# Fields per request head (Apache's LimitRequestFields); a real client sends 10-30.
MAX_HEADERS = 100
# Connections allowed above the cap, for the admin API only, when nothing can be shed.
ADMIN_RESERVE = 64
_ADMIN_PATH = b"/_skiff/"


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class EdgeLimits:
    """The limits, and the state every connection of one server shares."""

    def __init__(self, *, max_header_bytes: int, header_timeout: float,
                 max_connections: int) -> None:
        self.max_header_bytes = max_header_bytes
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        # connections waiting for a request head, oldest first (a dict keeps order)
        self.waiting: dict[EdgeProtocol, None] = {}
        self.shed = self.refused = self.too_large = self.timed_out = 0

    def stats(self) -> dict[str, int]:
        """Counters since start, for the admin API's /system."""
        return {"max_connections": self.max_connections, "waiting_for_head": len(self.waiting),
                "shed": self.shed, "refused": self.refused, "head_too_large": self.too_large,
                "timed_out": self.timed_out}


class _HeadTooLarge(Exception):
    pass


class EdgeProtocol(HttpToolsProtocol):
    """Built per connection by uvicorn; ``limits`` is bound with functools.partial."""

    def __init__(self, *args: Any, limits: EdgeLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._in_head = True  # bytes now received belong to a request head
        self._head_bytes = 0  # received while in the head (a bound before parsing ends)
        self._field_bytes = 0  # request line and header fields, as parsed
        self._fields = 0
        self._admin_only = False
        self._timer: asyncio.TimerHandle | None = None
        self._rejection: tuple[int, str, str] | None = None

    # -- connection accounting -------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self.limits
        if len(self.connections) > limits.max_connections:
            victim = next(iter(limits.waiting), None)
            if victim is not None:
                limits.shed += 1
                victim._close()
            elif len(self.connections) > limits.max_connections + ADMIN_RESERVE:
                limits.refused += 1
                self.transport.abort()
                return
            else:
                self._admin_only = True
        self._wait_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _wait_for_head(self) -> None:
        self.limits.waiting[self] = None
        self._arm(self._head_timeout)

    def _stop_waiting(self) -> None:
        self.limits.waiting.pop(self, None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, callback: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(self.limits.header_timeout, callback)

    def _close(self) -> None:
        self._stop_waiting()
        if not self.transport.is_closing():
            self.transport.close()

    # -- timeouts ----------------------------------------------------------------------
    def _idle(self) -> bool:
        """No request of this connection is being answered (a pipelined one may be)."""
        return self.cycle is None or self.cycle.response_complete

    def _head_timeout(self) -> None:
        self._timer = None
        if self.transport.is_closing() or not self._in_head or not self._idle():
            return
        self.limits.timed_out += 1
        if self._head_bytes:
            self._reject(408, "request_timeout", "the request head did not arrive within "
                         f"{self.limits.header_timeout:g} s (SKIFF_HEADER_TIMEOUT)")
        else:
            self._close()  # an idle connection: nothing to answer

    def _body_timeout(self) -> None:
        self._timer = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or not cycle.more_body:
            return
        self.limits.timed_out += 1
        if not cycle.response_started:
            self._reject(408, "request_timeout", "the request body stopped arriving for "
                         f"{self.limits.header_timeout:g} s (SKIFF_HEADER_TIMEOUT)")
        else:
            self._close()

    def _reject(self, status: int, code: str, message: str) -> None:
        """Answer in Skiff's error format and close: the request never reached the app."""
        rid = str(uuid.uuid4())
        body = json.dumps({"error": {"code": code, "message": message,
                                     "request_id": rid}}).encode()
        head = [STATUS_LINE[status]]
        head += [b"content-type: application/json\r\n",
                 b"x-skiff-request-id: " + rid.encode() + b"\r\n",
                 b"content-length: " + str(len(body)).encode() + b"\r\n",
                 b"connection: close\r\n\r\n", body]
        self.transport.write(b"".join(head))
        self._close()

    # -- parsing -----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        in_head = self._in_head
        if in_head:
            self._head_bytes += len(data)
        elif self._timer is not None and self.cycle is not None and self.cycle.more_body:
            self._arm(self._body_timeout)  # the body is still arriving
        super().data_received(data)
        if self._in_head and in_head and self._head_bytes > self.limits.max_header_bytes \
                and not self.transport.is_closing():
            # the head is not complete and already too big: do not wait for the rest
            self._too_large()

    def send_400_response(self, msg: str) -> None:
        if self._rejection is not None:  # our callback stopped the parser
            self.limits.too_large += 1
            self._reject(*self._rejection)
        else:
            self._reject(400, "bad_request", "the request is not valid HTTP/1.1 (a header "
                         "with a control character, a bad request line or framing)")

    def _too_large(self) -> None:
        self.limits.too_large += 1
        self._reject(431, *self._head_limit())

    def _head_limit(self) -> tuple[str, str]:
        return ("request_head_too_large", f"the request head is over "
                f"{self.limits.max_header_bytes} bytes (SKIFF_MAX_HEADER_BYTES) or "
                f"{MAX_HEADERS} header fields")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._field_bytes = self._fields = 0

    def on_url(self, url: bytes) -> None:
        self._field_bytes += len(url)
        if self._field_bytes > self.limits.max_header_bytes:
            self._rejection = (414, "request_line_too_long", "the request line is over "
                               f"{self.limits.max_header_bytes} bytes (SKIFF_MAX_HEADER_BYTES)")
            raise _HeadTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        self._field_bytes += len(name) + len(value) + 4
        if self._fields > MAX_HEADERS or self._field_bytes > self.limits.max_header_bytes:
            self._rejection = (431, *self._head_limit())
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._stop_waiting()
        if self._admin_only and not self.url.startswith(_ADMIN_PATH):
            self.limit_concurrency = 0  # uvicorn's own 503 (with connection: close)
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not self.parser.should_upgrade():
            self._arm(self._body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._in_head = True  # what follows is the next request's head

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self._in_head and not self.pipeline and self._idle():
            # ready for the next request: uvicorn's keep-alive timer closes an idle
            # connection, and ours bounds a head that then trickles in
            self._wait_for_head()
