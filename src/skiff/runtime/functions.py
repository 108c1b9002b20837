"""functions-framework code (Cloud Run functions), run unchanged.

``@functions_framework.http def f(request)`` and ``@functions_framework.cloud_event
def f(event)`` register the function's name in the framework's own registry
(``functions_framework._function_registry.REGISTRY_MAP``: name → ``"http"`` or
``"cloudevent"``). Detection reads that registry, and only when the app itself
imported the framework: Skiff never imports it, so an app that does not list it
in requirements.txt neither needs nor gets it.

- An **http** function is served by a Flask app, as the framework serves it:
  every path and method reaches the function with ``flask.request``, and what it
  returns goes through Flask's ``make_response`` (a string, a dict, a tuple with
  status and headers, a ``Response``; a generator streams). It runs as a WSGI
  app, so ``SCRIPT_NAME`` is the mount and streaming is the WSGI adapter's.
- A **cloud_event** function gets the CloudEvents of Skiff's bus and triggers
  (``handle_event``: the event a trigger delivers, as a
  ``cloudevents.http.CloudEvent``) and CloudEvents sent to its URL in binary or
  structured mode, which it answers ``200 OK`` as the framework does.
"""

from __future__ import annotations

import base64
import sys
from typing import Any

from skiff.ipc import HttpRequest, Response

from .context import InvokeContext
from .exceptions import LoadError
from .loaded import LoadedApp
from .streaming import Responder
from .wsgi import WsgiApp

HTTP, CLOUDEVENT = "http", "cloudevent"
_HINT = "add functions-framework to requirements.txt"


def signature_type(obj: object) -> str | None:
    """``"http"``, ``"cloudevent"`` (or another registered type) when ``obj`` is a
    function the app registered with a functions_framework decorator, else None."""
    registry = sys.modules.get("functions_framework._function_registry")
    name = getattr(obj, "__name__", None)
    if registry is None or not callable(obj) or not isinstance(name, str):
        return None
    kinds = getattr(registry, "REGISTRY_MAP", None)
    return kinds.get(name) if isinstance(kinds, dict) else None


def _flask() -> Any:
    try:
        import flask
    except ImportError:
        raise LoadError(f"a functions-framework function needs Flask: {_HINT}") from None
    return flask


def _cloudevents() -> Any:
    try:
        from cloudevents import http
    except ImportError:
        raise LoadError(f"a cloud_event function needs the cloudevents package: {_HINT}") from None
    return http


def _flask_app(name: str, view: Any) -> Any:
    flask = _flask()
    app = flask.Flask(name)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    # one view for every path, as the framework routes them
    app.add_url_rule("/", "run", view, defaults={"path": ""}, methods=methods)
    app.add_url_rule("/<path:path>", "run", view, methods=methods)
    return app


class HttpFunctionApp(WsgiApp):
    """An ``@functions_framework.http`` function behind a Flask app of its own."""

    def __init__(self, function: Any) -> None:
        flask = _flask()

        def view(path: str) -> Any:
            return function(flask.request._get_current_object())

        super().__init__(_flask_app(getattr(function, "__name__", "function"), view))
        self.function = function


class CloudEventFunctionApp(LoadedApp):
    """An ``@functions_framework.cloud_event`` function: bus events and HTTP CloudEvents."""

    kind = "lambda"  # called with events; one at a time per instance

    def __init__(self, function: Any) -> None:
        super().__init__(function)
        self._ce = _cloudevents()
        self._flask = _flask()

        def view(path: str) -> Any:
            request = self._flask.request
            try:
                event = self._ce.from_http(dict(request.headers), request.get_data())
            except Exception as exc:  # noqa: BLE001 - the SDK's own errors name what is wrong
                return (f"not a CloudEvent ({exc}); send ce-* headers (binary mode) or "
                        "application/cloudevents+json (structured mode)\n", 400,
                        {"content-type": "text/plain; charset=utf-8"})
            function(event)
            return "OK"

        self._http = WsgiApp(_flask_app(getattr(function, "__name__", "function"), view))

    def handle_http(self, req: HttpRequest, ctx: InvokeContext,
                    out: Responder | None = None) -> Response | None:
        return self._http.handle_http(req, ctx)

    def handle_event(self, payload: object, ctx: InvokeContext) -> object:
        self.target(to_cloudevent(self._ce, payload))  # type: ignore[operator]
        return None


def to_cloudevent(ce: Any, payload: object) -> Any:
    """The SDK's CloudEvent of one event as Skiff's bus delivers it (a dict of the
    attributes plus ``data``; bytes arrive as ``data_base64``)."""
    if not isinstance(payload, dict):
        raise TypeError(f"a cloud_event function takes CloudEvents, got {type(payload).__name__}; "
                        "give it an event trigger (format: cloudevent) or publish to it")
    attributes = {k: v for k, v in payload.items() if k not in ("data", "data_base64")}
    data = payload.get("data")
    if "data_base64" in payload:
        data = base64.b64decode(payload["data_base64"])
    return ce.CloudEvent(attributes, data)


def wrap(function: object, signature: str) -> LoadedApp:
    if signature == HTTP:
        return HttpFunctionApp(function)
    if signature == CLOUDEVENT:
        return CloudEventFunctionApp(function)
    raise LoadError(f"functions-framework {signature!r} functions are not supported yet; "
                    "use @functions_framework.http or @functions_framework.cloud_event")


__all__ = ["CloudEventFunctionApp", "HttpFunctionApp", "signature_type", "wrap"]
