"""The code that runs inside an instance process: load an app, then turn
requests and events into calls of it.

The instance loop does, per app::

    app = load_app(code_dir, handler, kind)          # LoadError -> InitFailed
    await app.startup()                               # ASGI lifespan; no-op otherwise
    resp = app.handle_http(req, ctx)                  # lambda, wsgi (is_async False)
    resp = await app.ahandle_http(req, ctx)           # asgi (is_async True)
    result = app.handle_event(payload, ctx)           # lambda; NotSupported otherwise
    body = encode_result(result)
    await app.shutdown()

Handler exceptions propagate unchanged; ``BadResult`` and ``NotSupported``
mark results and calls the platform cannot carry.
"""

from .context import InvokeContext, LambdaContext
from .exceptions import BadResult, LoadError, NotSupported
from .lambda_http import build_http_event, encode_result, to_response
from .loaded import LoadedApp
from .loader import KINDS, detect_kind, load_app
from .restore import on_restore

__all__ = [
    "KINDS",
    "BadResult",
    "InvokeContext",
    "LambdaContext",
    "LoadError",
    "LoadedApp",
    "NotSupported",
    "build_http_event",
    "detect_kind",
    "encode_result",
    "load_app",
    "on_restore",
    "to_response",
]
