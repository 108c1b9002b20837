"""HTTP for Lambda handlers the way API Gateway REST APIs (payload format 1.0,
the Lambda proxy integration) do it: the event SAM's "hello world" templates,
Powertools' ``APIGatewayRestResolver`` and Chalice read, and the result mapping
with ``multiValueHeaders``.

Event::

    resource, path, httpMethod, headers, multiValueHeaders, queryStringParameters,
    multiValueQueryStringParameters, pathParameters, stageVariables,
    requestContext{... v1 ...}, body, isBase64Encoded

Without routes of its own an app is behind one greedy resource, ``/{proxy+}``
(``/`` for the root), as ``sam init``'s ``Events: Path: /{proxy+}`` would put it.
Result: a dict with ``statusCode`` (anything else is a malformed proxy response,
which API Gateway answers 502), ``headers`` and ``multiValueHeaders`` (both are
sent), ``body`` and ``isBase64Encoded``.
"""

from __future__ import annotations

import base64
import time
from urllib.parse import parse_qsl

from skiff.ipc import HttpRequest, Response

from .exceptions import BadResult
from .lambda_http import ACCOUNT_ID, _b64decode, _clf_time, _header_text, _is_text

#: The stage a REST API event names: SAM's default stage.
STAGE = "Prod"
_NULL_IDENTITY = ("accessKey", "accountId", "caller", "cognitoAuthenticationProvider",
                  "cognitoAuthenticationType", "cognitoIdentityId", "cognitoIdentityPoolId",
                  "principalOrgId", "user", "userArn")


def build_rest_event(req: HttpRequest, app: str = "", *, now_ms: float | None = None) -> dict:
    """The API Gateway REST API (payload 1.0) proxy event for ``req``."""
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in req.headers:
        headers[name] = value  # the last value, as API Gateway keeps it
        multi_headers.setdefault(name, []).append(value)
    query: dict[str, str] | None = None
    multi_query: dict[str, list[str]] | None = None
    if req.query:
        query, multi_query = {}, {}
        for name, value in parse_qsl(req.query, keep_blank_values=True):
            query[name] = value
            multi_query.setdefault(name, []).append(value)
    path = req.path or "/"
    if req.route_key != "$default":  # one of the app's spec.http.routes matched
        resource = req.route_key.partition(" ")[2]
        params = dict(req.path_params) or None
    elif path == "/":
        resource, params = "/", None
    else:  # behind one greedy resource
        resource, params = "/{proxy+}", {"proxy": path[1:]}
    if now_ms is None:
        now_ms = time.time() * 1000
    epoch_ms = int(now_ms)
    host = req.host.partition(":")[0] if req.host else "localhost"
    body: str | None = None
    is_b64 = False
    if req.body:
        ctype = headers.get("content-type")
        if ctype is None or _is_text(ctype):
            try:
                body = req.body.decode()
            except UnicodeDecodeError:
                is_b64 = True
        else:
            is_b64 = True
        if is_b64:
            body = base64.b64encode(req.body).decode("ascii")
    identity: dict = dict.fromkeys(_NULL_IDENTITY)
    identity["sourceIp"] = req.client
    identity["userAgent"] = headers.get("user-agent", "")
    return {
        "resource": resource,
        "path": path,
        "httpMethod": req.method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": params,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": app or "local",
            "domainName": host,
            "domainPrefix": host.partition(".")[0],
            "extendedRequestId": req.id,
            "httpMethod": req.method,
            "identity": identity,
            "path": path,
            "protocol": "HTTP/1.1",
            "requestId": req.id,
            "requestTime": _clf_time(epoch_ms),
            "requestTimeEpoch": epoch_ms,
            "resourceId": app or "local",
            "resourcePath": resource,
            "stage": STAGE,
        },
        "body": body,
        "isBase64Encoded": is_b64,
    }


def to_rest_response(request_id: str, result: object) -> Response:
    """Map a handler's result to a response as a REST API's proxy integration does."""
    if not isinstance(result, dict) or "statusCode" not in result:
        raise BadResult("a REST API (payloadFormat 1.0) handler must return a dict with "
                        f"statusCode, got {type(result).__name__!r}")
    status = result["statusCode"]
    try:
        status = int(status)
    except (TypeError, ValueError):
        raise BadResult(f"statusCode must be an integer, got {status!r}") from None
    headers: list[tuple[str, str]] = []
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        raise BadResult("'headers' and 'multiValueHeaders' must be objects")
    for name, values in multi.items():
        if not isinstance(values, list):
            raise BadResult(f"multiValueHeaders[{name!r}] must be a list")
        headers.extend((str(name).lower(), _header_text(v)) for v in values)
    # both given: API Gateway merges them, a pair present in both sent once
    sent = set(headers)
    for name, value in single.items():
        pair = (str(name).lower(), _header_text(value))
        if pair not in sent:
            headers.append(pair)
    if not any(name == "content-type" for name, _ in headers):
        headers.append(("content-type", "application/json"))
    body = result.get("body")
    if body is None:
        data = b""
    elif isinstance(body, str):
        data = _b64decode(body) if result.get("isBase64Encoded") else body.encode()
    else:
        raise BadResult(f"'body' must be a string, got {type(body).__name__!r} "
                        "(return json.dumps(...) for JSON)")
    return Response(id=request_id, status=status, headers=headers, body=data)
