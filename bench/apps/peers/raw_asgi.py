"""The Python ceiling: the hello handler as a bare ASGI callable on plain
uvicorn (uvloop + httptools), with the least event a handler needs."""

import json
import os
import sys
from urllib.parse import parse_qsl

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hello"))
from handler import handler  # noqa: E402

_HEADERS = [(b"content-type", b"application/json")]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    qs = scope["query_string"].decode("latin-1")
    event = {"rawPath": scope["path"], "rawQueryString": qs,
             "queryStringParameters": dict(parse_qsl(qs)) if qs else None}
    body = json.dumps(handler(event, None)).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
