"""The hello handler routed by aws-lambda-powertools' APIGatewayHttpResolver,
behind a minimal ASGI → API Gateway HTTP API (payload 2.0) adapter, on uvicorn:
the way one would run a Powertools Lambda as a plain web server."""

import base64
import os
import sys
import time
import uuid
from urllib.parse import parse_qsl

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hello"))
from handler import handler  # noqa: E402

resolver = APIGatewayHttpResolver()


@resolver.get("/")
def hello():
    return handler(resolver.current_event.raw_event, resolver.lambda_context)


class _Context:
    function_name = "hello"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:local:000000000000:function:hello"

    def __init__(self, request_id):
        self.aws_request_id = request_id


def _event(scope, body):
    headers = {}
    for k, v in scope["headers"]:
        name, value = k.decode("latin-1"), v.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    qs = scope["query_string"].decode("latin-1")
    now = time.time()
    client = scope.get("client") or ("127.0.0.1", 0)
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": scope["path"],
        "rawQueryString": qs, "headers": headers,
        "queryStringParameters": dict(parse_qsl(qs)) if qs else None,
        "requestContext": {
            "accountId": "000000000000", "apiId": "local",
            "domainName": headers.get("host", "localhost"), "domainPrefix": "local",
            "http": {"method": scope["method"], "path": scope["path"], "protocol": "HTTP/1.1",
                     "sourceIp": client[0], "userAgent": headers.get("user-agent", "")},
            "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000)},
        "body": body.decode("utf-8", "replace") if body else None,
        "isBase64Encoded": False,
    }


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    event = _event(scope, body)
    result = resolver.resolve(event, _Context(event["requestContext"]["requestId"]))
    payload = result.get("body") or ""
    data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
    headers = [(k.lower().encode(), str(v).encode()) for k, v in (result.get("headers") or {}).items()]
    headers += [(b"set-cookie", c.encode()) for c in result.get("cookies") or ()]
    await send({"type": "http.response.start", "status": result.get("statusCode", 200),
                "headers": headers})
    await send({"type": "http.response.body", "body": data})
