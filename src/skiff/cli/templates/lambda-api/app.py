"""__APP_NAME__: a Lambda-style JSON API.

Skiff calls ``handler(event, context)`` with an API Gateway HTTP API
(payload 2.0) event, the same as AWS Lambda does. ``rawPath`` is relative to
the app: a request for ``/__APP_NAME__/hello`` arrives as ``/hello``.

Return a dict with ``statusCode``/``headers``/``body``, or any other JSON
value for a 200 JSON response. Add a route by writing a function and listing
it in ``ROUTES``.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]


def index(event: Event) -> Any:
    return {"app": "__APP_NAME__", "routes": [f"{method} {path}" for method, path in ROUTES]}


def hello(event: Event) -> Any:
    name = (event.get("queryStringParameters") or {}).get("name", "world")
    return {"message": f"{os.environ.get('GREETING', 'Hello')}, {name}!"}


def echo(event: Event) -> Any:
    try:
        data = json.loads(_body(event))
    except ValueError:
        return error(400, "invalid_json", "body must be valid JSON")
    return {"echo": data}


ROUTES: dict[tuple[str, str], Callable[[Event], Any]] = {
    ("GET", "/"): index,
    ("GET", "/hello"): hello,
    ("POST", "/echo"): echo,
}


def handler(event: Event, context: Any) -> Any:
    method = event["requestContext"]["http"]["method"]
    path = event.get("rawPath") or "/"
    route = ROUTES.get((method, path))
    if route is None:
        return error(404, "not_found", f"no route for {method} {path}")
    return route(event)


def error(status: int, code: str, message: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"error": {"code": code, "message": message}}),
    }


def _body(event: Event) -> str:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body).decode()
    return body
