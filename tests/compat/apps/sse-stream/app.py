import asyncio

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.routing import Route


async def numbers(request):
    count = int(request.query_params.get("count", "3"))

    async def generate():
        for i in range(1, count + 1):
            yield {"event": "tick", "id": str(i), "data": f"n={i}"}
            await asyncio.sleep(0)
        yield {"event": "done", "data": "bye"}

    return EventSourceResponse(generate())


app = Starlette(routes=[Route("/numbers", numbers)])
