"""Takes WebSocket handshakes and never answers them; /raise fails before answering."""

import asyncio


async def app(scope, receive, send):
    if scope["type"] != "websocket":
        return
    await receive()
    if scope["path"].endswith("/raise"):
        raise RuntimeError("secret://db-password would leak here")
    await asyncio.Event().wait()
