"""A Lambda handler ``handler(event, context)`` as a LoadedApp."""

from __future__ import annotations

from skiff.ipc import HttpRequest, Response

from .context import InvokeContext, LambdaContext
from .lambda_http import build_http_event, to_response
from .lambda_rest import build_rest_event, to_rest_response
from .loaded import LoadedApp


class LambdaApp(LoadedApp):
    kind = "lambda"

    def handle_http(self, req: HttpRequest, ctx: InvokeContext) -> Response:
        if req.payload_format == "1.0":  # a REST API's proxy integration
            result = self.target(build_rest_event(req, ctx.app), LambdaContext(ctx))
            return to_rest_response(req.id, result)
        result = self.target(build_http_event(req, ctx.app), LambdaContext(ctx))
        return to_response(req.id, result)

    def handle_event(self, payload: object, ctx: InvokeContext) -> object:
        return self.target(payload, LambdaContext(ctx))
