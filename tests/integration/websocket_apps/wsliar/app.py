"""A hostile ASGI app that writes WebSocket frames of its own on its instance
socket, past the runtime's size check and credit window."""

import asyncio

from skiff import ipc as p
from skiff.instance.worker import _request_id, rpc


async def app(scope, receive, send):
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    own, raw = _request_id.get(), rpc.channel.send
    path = scope["path"][len(scope["root_path"]):]
    if path == "/echo":
        while (msg := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": msg.get("text") or ""})
        return
    if path == "/raw-big":  # over the message limit, within the window and the frame cap
        raw(p.WsMessage(id=own, data=b"x" * (2 << 20)))
    elif path == "/forged":  # another connection's id: dropped
        raw(p.WsMessage(id="someone-else", data=b"forged"))
        raw(p.WsClose(id="someone-else", code=1000))
        await send({"type": "websocket.send", "text": "after forging"})
    elif path == "/raw-flood":  # past the credit window
        for _ in range(256):  # 16 MiB: more than the kernel buffers for a client not reading
            raw(p.WsMessage(id=own, data=b"x" * (64 * 1024)))
    await asyncio.Event().wait()
