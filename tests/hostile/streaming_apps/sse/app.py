"""A bare ASGI app (the messages Starlette's StreamingResponse, sse-starlette and
BackgroundTasks send), one instance serving every request, so its requests
coordinate through module state rather than the clock:

/events   SSE: one event, pings while it waits for /release, then the last event
/idle     one chunk, then nothing (until cancelled)
/big      more than the response-size cap, in 1 MiB chunks
/stuck    nothing at all (until cancelled: its request timeout)
/flood    15 MiB in 64 KiB parts, counting what its sends took (a slow client's test)
/bg       a whole response, then a background task that waits for /release-bg
/state    what happened: cancellations, background tasks done, this instance's id
"""

import asyncio
import json
import uuid

INSTANCE = uuid.uuid4().hex
released = asyncio.Event()
bg_released = asyncio.Event()
state = {"cancelled": [], "bg_done": 0, "flood_sent": 0, "instance": INSTANCE}


async def _start(send, ctype=b"text/event-stream"):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", ctype), (b"cache-control", b"no-cache")]})


async def _body(send, data, more=True):
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def events(send):
    await _start(send)
    await _body(send, b"data: first\n\n")
    try:
        while not released.is_set():
            try:
                await asyncio.wait_for(released.wait(), 0.2)
            except TimeoutError:
                await _body(send, b": ping\n\n")
    except asyncio.CancelledError:
        state["cancelled"].append("events")
        raise
    await _body(send, b"data: last\n\n", more=False)


async def idle(send, name):
    await _start(send)
    await _body(send, b"data: only\n\n")
    try:
        await asyncio.Event().wait()  # forever
    except asyncio.CancelledError:
        state["cancelled"].append(name)
        raise


async def big(send):
    await _start(send, b"application/octet-stream")
    try:
        for _ in range(20):
            await _body(send, b"x" * (1 << 20))
    except asyncio.CancelledError:
        state["cancelled"].append("big")
        raise
    await _body(send, b"", more=False)


async def flood(send):
    await _start(send, b"application/octet-stream")
    for _ in range(240):
        await _body(send, b"x" * (64 << 10))
        state["flood_sent"] += 64 << 10
    await _body(send, b"", more=False)


async def bg(send):
    body = b'{"queued": true}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
    # what Starlette does with BackgroundTasks: run them after the last send
    await bg_released.wait()
    state["bg_done"] += 1


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"].removeprefix(scope["root_path"])
    if path == "/events":
        await events(send)
    elif path in ("/idle", "/hang"):
        await idle(send, path[1:])
    elif path == "/stuck":
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            state["cancelled"].append("stuck")
            raise
    elif path == "/big":
        await big(send)
    elif path == "/flood":
        await flood(send)
    elif path == "/bg":
        await bg(send)
    else:
        if path == "/release":
            released.set()
        elif path == "/release-bg":
            bg_released.set()
        body = json.dumps(state).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
