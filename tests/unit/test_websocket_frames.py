"""The WebSocket pieces that decide alone: which close codes the gateway may pass
on, how a reason fits a close frame, and the instance side's window (an app's
send waits for credit; each message it receives is answered with credit; a
message over the limit closes with 1009)."""

from __future__ import annotations

import asyncio

import pytest

from skiff import ipc as p
from skiff.gateway.websocket import close_code, close_reason
from skiff.runtime.websocket import ClientDisconnected, WsSession


@pytest.mark.parametrize(("given", "sent"), [
    (1000, 1000), (1001, 1001), (1003, 1003), (1008, 1008), (1009, 1009), (1011, 1011),
    (1013, 1013), (3000, 3000), (4001, 4001), (4999, 4999),
    # reserved for "no code" and "abnormal", never in a frame; unassigned; out of range
    (1004, 1011), (1005, 1011), (1006, 1011), (1015, 1011), (1016, 1011), (2999, 1011),
    (5000, 1011), (0, 1011), (-1, 1011),
])
def test_close_codes_an_endpoint_may_send(given, sent):
    assert close_code(given) == sent


def test_a_close_reason_is_cut_to_fit_a_frame_at_a_character_boundary():
    reason = close_reason("é" * 100)  # 200 bytes of UTF-8
    assert len(reason.encode()) <= 123
    assert reason == "é" * 60
    assert close_reason("bye") == "bye"


def session(max_message: int = 1 << 20) -> tuple[WsSession, list]:
    frames: list = []
    return WsSession(p.WsConnect(id="r1", path="/", max_message=max_message),
                     frames.append), frames


def test_send_waits_for_credit_once_a_window_is_out():
    async def go() -> None:
        ws, frames = session()
        assert (await ws.receive())["type"] == "websocket.connect"
        await ws.send({"type": "websocket.accept"})
        first = b"x" * (p.STREAM_WINDOW - p.WS_MESSAGE_OVERHEAD)  # costs the whole window
        await ws.send({"type": "websocket.send", "bytes": first})
        blocked = asyncio.ensure_future(ws.send({"type": "websocket.send", "text": "next"}))
        await asyncio.sleep(0)
        assert not blocked.done()  # the gateway has not passed the window on yet
        ws.grant(1)
        await blocked
        assert [type(f).__name__ for f in frames] == ["WsAccept", "WsMessage", "WsMessage"]
        assert frames[2].text and frames[2].data == b"next"

    asyncio.run(go())


def test_each_received_message_is_answered_with_credit():
    async def go() -> None:
        ws, frames = session()
        await ws.receive()
        await ws.send({"type": "websocket.accept"})
        ws.feed(p.WsMessage(id="r1", data="hé".encode(), text=True))
        ws.feed(p.WsClose(id="r1", code=4001, reason="bye"))
        assert not any(isinstance(f, p.Credit) for f in frames)  # not taken yet
        assert await ws.receive() == {"type": "websocket.receive", "text": "hé"}
        assert frames[-1] == p.Credit(id="r1", size=3 + p.WS_MESSAGE_OVERHEAD)
        assert await ws.receive() == {"type": "websocket.disconnect", "code": 4001,
                                      "reason": "bye"}
        with pytest.raises(ClientDisconnected):
            await ws.send({"type": "websocket.send", "text": "too late"})

    asyncio.run(go())


def test_a_message_over_the_limit_closes_with_1009_and_is_never_framed():
    async def go() -> None:
        ws, frames = session(max_message=10)
        await ws.receive()
        await ws.send({"type": "websocket.accept"})
        with pytest.raises(ClientDisconnected, match="SKIFF_WS_MAX_MESSAGE_BYTES"):
            await ws.send({"type": "websocket.send", "bytes": b"x" * 11})
        assert frames[1:] == [p.WsClose(id="r1", code=1009, reason="message too big")]

    asyncio.run(go())


def test_an_app_that_returns_before_accepting_refuses():
    async def go() -> None:
        ws, frames = session()
        await ws.receive()
        ws.returned()
        assert isinstance(frames[-1], p.WsClose)

    asyncio.run(go())


def test_empty_messages_take_credit_too():
    """A flood of empty messages fills the window like any other."""
    async def go() -> None:
        ws, frames = session()
        await ws.receive()
        await ws.send({"type": "websocket.accept"})
        for _ in range(p.STREAM_WINDOW // p.WS_MESSAGE_OVERHEAD):
            await ws.send({"type": "websocket.send", "bytes": b""})
        blocked = asyncio.ensure_future(ws.send({"type": "websocket.send", "bytes": b""}))
        await asyncio.sleep(0)
        assert not blocked.done()
        ws.grant(p.WS_MESSAGE_OVERHEAD)
        await blocked
        assert len(frames) == 2 + p.STREAM_WINDOW // p.WS_MESSAGE_OVERHEAD

    asyncio.run(go())
