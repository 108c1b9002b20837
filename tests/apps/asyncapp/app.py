"""A bare ASGI app: concurrent requests share one instance."""

import asyncio
import json
import uuid

INSTANCE = uuid.uuid4().hex


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    delay = float(scope["query_string"].decode().partition("=")[2] or 0)
    await asyncio.sleep(delay)
    body = json.dumps({"pid": INSTANCE, "path": scope["path"],
                       "root_path": scope["root_path"]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
