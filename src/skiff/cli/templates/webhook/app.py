"""__APP_NAME__: receive signed webhooks, and only genuine ones.

The sender signs the raw body with a shared secret (HMAC-SHA256) and sends
``sha256=<hex>`` in ``X-Signature-256`` (GitHub's X-Hub-Signature-256 works too).
The signature is checked on the exact bytes, before the body is parsed, in
constant time; the secret is read per request, so rotating it needs no deploy."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

HEADERS = ("x-signature-256", "x-hub-signature-256")


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def respond(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"},
            "body": json.dumps(body)}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("requestContext", {}).get("http", {}).get("method") != "POST":
        return respond(405, {"error": {"code": "method_not_allowed", "message": "use POST"}})
    secret = os.environ.get("WEBHOOK_SECRET", "")
    if not secret:
        return respond(500, {"error": {"code": "not_configured",
                                       "message": "set the secret: skiff secrets set __APP_NAME__-signing"}})
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    given = next((headers[h] for h in HEADERS if h in headers), "")
    if not hmac.compare_digest(given.encode(), sign(secret, body).encode()):
        return respond(401, {"error": {"code": "bad_signature",
                                       "message": "X-Signature-256 is missing or does not match"}})
    try:
        payload = json.loads(body)
    except ValueError:
        return respond(400, {"error": {"code": "invalid_payload", "message": "send JSON"}})
    print(f"accepted {headers.get('x-event-type', 'event')}")
    return respond(202, {"accepted": True, "keys": sorted(payload) if isinstance(payload, dict) else []})
