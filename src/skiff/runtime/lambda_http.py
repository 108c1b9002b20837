"""HTTP for Lambda handlers, the way API Gateway HTTP APIs do it: a request
becomes a payload format 2.0 event, and the handler's result becomes a response
by API Gateway's rules.

Event (per request, relative to the app's mount, as behind a ``$default`` stage)::

    version "2.0", routeKey, rawPath, rawQueryString, cookies?, headers,
    queryStringParameters?, requestContext{...}, body?, pathParameters?, isBase64Encoded

Result mapping::

    {"statusCode": ..., "headers", "cookies", "body", "isBase64Encoded"}  → that response
    any other JSON value (dict, list, str, number, bool, None)             → 200 + JSON of it
    anything json.dumps rejects                                           → BadResult
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from decimal import Decimal
from urllib.parse import parse_qsl

import msgspec

from skiff.ipc import HttpRequest, Response

from .exceptions import BadResult

ACCOUNT_ID = "000000000000"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TEXT_TYPES = frozenset({
    "application/json", "application/xml", "application/javascript",
    "application/x-www-form-urlencoded", "application/graphql", "application/yaml",
    "application/x-yaml", "application/x-ndjson", "application/csv",
})
_encode_str = msgspec.json.encode


def build_http_event(req: HttpRequest, app: str = "", *, now_ms: float | None = None) -> dict:
    """The API Gateway HTTP API (payload 2.0) event for ``req``. ``app`` names
    the API (apiId); ``now_ms`` fixes the request time (tests)."""
    headers: dict[str, str] = {}
    cookies: list[str] | None = None
    for name, value in req.headers:
        if name == "cookie":
            # API Gateway moves cookies to their own list and drops the header.
            if cookies is None:
                cookies = []
            cookies.extend(c for c in (p.strip() for p in value.split(";")) if c)
            continue
        prev = headers.get(name)
        headers[name] = value if prev is None else f"{prev},{value}"

    if now_ms is None:
        now_ms = time.time() * 1000
    epoch_ms = int(now_ms)
    path = req.path or "/"
    host = req.host.partition(":")[0] if req.host else "localhost"
    event: dict = {
        "version": "2.0",
        "routeKey": req.route_key,
        "rawPath": path,
        "rawQueryString": req.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if req.query:
        event["queryStringParameters"] = _query_params(req.query)
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": app or "local",
        "domainName": host,
        "domainPrefix": host.partition(".")[0],
        "http": {
            "method": req.method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": req.client,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": req.id,
        "routeKey": req.route_key,
        "stage": "$default",
        "time": _clf_time(epoch_ms),
        "timeEpoch": epoch_ms,
    }
    body = req.body
    is_b64 = False
    if body:
        ctype = headers.get("content-type")
        if ctype is None or _is_text(ctype):
            try:
                event["body"] = body.decode()
            except UnicodeDecodeError:
                is_b64 = True
        else:
            is_b64 = True
        if is_b64:
            event["body"] = base64.b64encode(body).decode("ascii")
    if req.path_params:
        event["pathParameters"] = dict(req.path_params)
    event["isBase64Encoded"] = is_b64
    return event


def to_response(request_id: str, result: object) -> Response:
    """Map a handler's result to a response as API Gateway (payload 2.0) does."""
    if isinstance(result, dict) and "statusCode" in result:
        return _proxy_response(request_id, result)
    return Response(id=request_id, status=200, headers=[("content-type", "application/json")],
                    body=encode_result(result))


def encode_result(result: object) -> bytes:
    """JSON of a handler's result with the Lambda Python runtime's semantics:
    json.dumps (so sets, bytes, datetimes are rejected, NaN is allowed), UTF-8
    unescaped, Decimal as a number.

    msgspec only for plain strings, where its output is byte-identical; for
    containers it would quietly accept types Lambda rejects."""
    if type(result) is str:
        try:
            return _encode_str(result)
        except UnicodeEncodeError as exc:
            raise BadResult(f"handler returned a string that is not valid Unicode: {exc}") from None
    try:
        return json.dumps(result, ensure_ascii=False, default=_json_default).encode()
    except (TypeError, ValueError) as exc:  # circular reference, bad keys, lone surrogates
        raise BadResult(f"handler returned a value that is not JSON serializable: {exc}") from None


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise BadResult(f"handler returned a value of type {type(value).__name__!r} "
                    "that is not JSON serializable")


def _proxy_response(request_id: str, result: dict) -> Response:
    status = result["statusCode"]
    if type(status) is not int:
        try:
            status = int(status)
        except (TypeError, ValueError):
            raise BadResult(f"statusCode must be an integer, got {status!r}") from None
    headers: list[tuple[str, str]] = []
    has_type = False
    raw = result.get("headers")
    if raw:
        if not isinstance(raw, dict):
            raise BadResult(f"'headers' must be an object, got {type(raw).__name__!r}")
        for name, value in raw.items():
            name = str(name).lower()
            if name == "content-type":
                has_type = True
            if type(value) is str:
                headers.append((name, value))
            elif isinstance(value, list | tuple):  # several values: the header repeated
                headers.extend((name, _header_text(v)) for v in value)
            else:
                headers.append((name, _header_text(value)))
    cookies = result.get("cookies")
    if cookies:
        headers.extend(("set-cookie", str(c)) for c in cookies)
    if not has_type:
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


def _b64decode(body: str) -> bytes:
    try:
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error:
            if not any(c.isspace() for c in body):
                raise
            # MIME-style line breaks (base64.encodebytes) are fine, other junk is not.
            return base64.b64decode("".join(body.split()), validate=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII text
        raise BadResult(f"'body' is marked isBase64Encoded but is not base64: {exc}") from None


def _header_text(value: object) -> str:
    # API Gateway reads the JSON of the result, so True arrives as "true".
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _query_params(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        prev = params.get(name)
        params[name] = value if prev is None else f"{prev},{value}"
    return params


def _is_text(content_type: str) -> bool:
    mime = content_type.partition(";")[0].strip().lower()
    return (not mime or mime.startswith("text/") or mime in _TEXT_TYPES
            or mime.endswith(("+json", "+xml")))


# Requests in the same second share the formatted time; one tuple, so threads
# always see a matching (second, text) pair.
_clf_last: tuple[int, str] = (-1, "")


def _clf_time(epoch_ms: int) -> str:
    global _clf_last
    second = epoch_ms // 1000
    cached = _clf_last
    if second == cached[0]:
        return cached[1]
    t = time.gmtime(second)
    text = (f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")
    _clf_last = (second, text)
    return text
