"""How an adapter answers in parts: the instance's worker gives an adapter a
responder, which sends the head and body frames (ipc ``ResponseStart``,
``BodyChunk``) and waits for the gateway's credit, so an app that writes faster
than its client reads is paused inside its own ``send``/``yield``.

Without a responder (skiff.testing, unit tests) adapters buffer the whole response.
"""

from __future__ import annotations

from typing import Protocol

from skiff.ipc import Headers, Response


class StreamCancelled(Exception):  # noqa: N818 - a signal, like asyncio.CancelledError
    """The gateway asked the instance to stop this request (its client went away,
    or its stream hit a limit)."""


class Responder(Protocol):
    """For sync adapters (WSGI): each call blocks until the frame may be sent."""

    def start(self, status: int, headers: Headers) -> None: ...
    def chunk(self, data: bytes) -> None: ...  # raises StreamCancelled
    def end(self) -> None: ...


class AsyncResponder(Protocol):
    """For the ASGI adapter."""

    def complete(self, resp: Response) -> None: ...  # whole; may go before the call returns
    async def start(self, status: int, headers: Headers) -> None: ...
    async def chunk(self, data: bytes) -> None: ...
    async def end(self) -> None: ...
