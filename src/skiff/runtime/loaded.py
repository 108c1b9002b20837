"""``LoadedApp``: the one interface the instance loop drives, whatever the kind."""

from __future__ import annotations

from skiff.ipc import HttpRequest, Response

from .context import InvokeContext
from .exceptions import NotSupported


class LoadedApp:
    """An imported app, ready to serve.

    Sync kinds (lambda, wsgi) implement ``handle_http``; the async kind (asgi)
    implements ``ahandle_http`` and the lifespan hooks. ``is_async`` tells the
    caller which one to use.
    """

    kind: str = ""
    is_async: bool = False
    default_concurrency: int = 1

    def __init__(self, target: object) -> None:
        self.target = target

    def handle_http(self, req: HttpRequest, ctx: InvokeContext) -> Response:
        raise NotSupported(f"a {self.kind} app is called with ahandle_http")

    async def ahandle_http(self, req: HttpRequest, ctx: InvokeContext) -> Response:
        raise NotSupported(f"a {self.kind} app is called with handle_http")

    def handle_event(self, payload: object, ctx: InvokeContext) -> object:
        raise NotSupported(f"a {self.kind} app takes HTTP requests only; "
                           "direct invocation needs a Lambda handler (spec.kind: lambda)")

    async def startup(self) -> None:
        """Run once before the first request (ASGI lifespan); no-op elsewhere."""

    async def shutdown(self) -> None:
        """Run once after the last request (ASGI lifespan); no-op elsewhere."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} kind={self.kind!r} target={self.target!r}>"


class StaticOnlyApp(LoadedApp):
    """An app with static files and no handler: the gateway serves the files,
    anything that reaches the instance is not found."""

    kind = "static"

    def __init__(self) -> None:
        super().__init__(None)

    def handle_http(self, req: HttpRequest, ctx: InvokeContext) -> Response:
        return Response(id=req.id, status=404, headers=[("content-type", "application/json")],
                        body=b'{"error": {"code": "not_found", "message": "no such file"}}')
