"""A Starlette app whose lifespan opens a resource and shares it as state."""

import contextlib

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

EVENTS: list[str] = []


@contextlib.asynccontextmanager
async def lifespan(app):
    EVENTS.append("startup")
    yield {"pool": "db-pool-1"}
    EVENTS.append("shutdown")


async def home(request):
    return JSONResponse({"pool": request.state.pool, "events": EVENTS})


app = Starlette(routes=[Route("/", home)], lifespan=lifespan)
