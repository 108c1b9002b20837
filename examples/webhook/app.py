"""webhook: receive GitHub-style webhooks, and only genuine ones.

A plain Lambda handler with no dependencies. The sender signs the raw request
body with a shared secret (HMAC-SHA256) and puts ``sha256=<hex digest>`` in
the ``X-Hub-Signature-256`` header; we recompute it with ``WEBHOOK_SECRET``
and compare in constant time.

    POST /          any path works; answers
                    202 {"event", "delivery", "summary", ...}  signature ok
                    401 bad_signature                           missing or wrong
                    400 invalid_payload                         signed, but not a JSON object
                    405 method_not_allowed                      anything but POST

The signature covers the exact bytes sent, so the body is checked before it
is parsed, and a base64-encoded body (``isBase64Encoded``) is decoded first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

SIGNATURE_HEADER = "x-hub-signature-256"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    method = event.get("requestContext", {}).get("http", {}).get("method", "")
    if method != "POST":
        return _error(405, "method_not_allowed", "send webhooks with POST", allow="POST")

    # Read per request, not at import, so a rotated secret needs no redeploy.
    secret = os.environ.get("WEBHOOK_SECRET", "")
    if not secret:
        return _error(500, "not_configured", "WEBHOOK_SECRET is not set for this app")

    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    body = _raw_body(event)
    if not verify_signature(secret, body, headers.get(SIGNATURE_HEADER, "")):
        return _error(401, "bad_signature", f"{SIGNATURE_HEADER} is missing or does not match")

    try:
        payload = json.loads(body)
    except ValueError:  # also covers bodies that are not UTF-8
        payload = None
    if not isinstance(payload, dict):
        return _error(
            400,
            "invalid_payload",
            "body must be a JSON object (set the webhook's content type to application/json)",
        )

    name = headers.get("x-github-event", "unknown")
    result = {
        "event": name,
        "delivery": headers.get("x-github-delivery"),
        "action": payload.get("action"),
        "repository": (payload.get("repository") or {}).get("full_name"),
        "sender": (payload.get("sender") or {}).get("login"),
        "summary": summarize(name, payload),
    }
    # One JSON line per delivery: this is what `skiff logs webhook` shows.
    print(json.dumps({"message": "webhook accepted", **result}))
    return _json(202, result)


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # compare_digest on bytes: constant time, and no TypeError on non-ASCII input.
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def summarize(event: str, payload: dict[str, Any]) -> str:
    """One human line about a delivery, for the common GitHub events."""
    repo = (payload.get("repository") or {}).get("full_name", "?")
    who = (payload.get("sender") or {}).get("login", "someone")
    action = payload.get("action", "")
    if event == "ping":
        return f"ping for hook {payload.get('hook_id', '?')}: {payload.get('zen', '')}".strip()
    if event == "push":
        commits = len(payload.get("commits") or [])
        ref = payload.get("ref", "?")
        return f"{who} pushed {commits} commit{'s' * (commits != 1)} to {repo} {ref}"
    if event in ("issues", "pull_request"):
        item = payload.get("issue") or payload.get("pull_request") or {}
        kind = "issue" if event == "issues" else "pull request"
        return (
            f"{who} {action} {kind} #{item.get('number', '?')} in {repo}: {item.get('title', '')}"
        )
    return " ".join(part for part in (event, action, "from", who, "in", repo) if part)


def _raw_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode()


def _json(status: int, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **headers},
        "body": json.dumps(body),
    }


def _error(status: int, code: str, message: str, **headers: str) -> dict[str, Any]:
    return _json(status, {"error": {"code": code, "message": message}}, **headers)
