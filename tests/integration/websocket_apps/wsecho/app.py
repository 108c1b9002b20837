"""A raw ASGI app with WebSocket endpoints for the gateway's tests: echo, refuse,
hang, never read, send a 100 MiB message. ``GET /state`` tells what it saw."""

import asyncio
import json
import os

seen = {"disconnects": [], "cancelled": 0, "received": 0}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return  # no lifespan
    path = scope["path"][len(scope["root_path"]):]
    if scope["type"] == "http":
        body = json.dumps({**seen, "pid": os.getpid()}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    assert (await receive())["type"] == "websocket.connect"
    if path == "/refuse":
        await send({"type": "websocket.close", "code": 4003})
        return
    offered = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None,
                "headers": [(b"x-app", b"wsecho")]})
    try:
        if path == "/echo":
            await echo(receive, send)
        elif path in ("/hang", "/noread"):
            await asyncio.Event().wait()  # accepts, then never reads nor sends
        elif path == "/big":
            await send({"type": "websocket.send", "bytes": b"\0" * (100 << 20)})
    except asyncio.CancelledError:
        seen["cancelled"] += 1
        raise


async def echo(receive, send):
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            seen["disconnects"].append([msg["code"], msg.get("reason", "")])
            return
        seen["received"] += 1
        text = msg.get("text")
        if text is not None and text.startswith("close "):
            _, code, reason = text.split(" ", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
            return
        if text == "pid":
            await send({"type": "websocket.send", "text": str(os.getpid())})
        elif text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})
