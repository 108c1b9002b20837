"""An ASGI app whose lifespan shutdown never returns."""

import asyncio
import ctypes


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                ctypes.CDLL(None).prctl(15, b"skiffhang", 0, 0, 0)  # PR_SET_NAME
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.sleep(3600)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hanging on"})
