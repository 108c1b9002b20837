"""__APP_NAME__'s API: a page in public/ calls it with fetch(). Notes are kept in the
app's KV store."""

from __future__ import annotations

import json
import uuid
from typing import Any

from skiff import sdk


def respond(status: int, body: Any) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"},
            "body": json.dumps(body)}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    method = event["requestContext"]["http"]["method"]
    path = event.get("rawPath", "/")
    if path == "/api/health":
        return respond(200, {"ok": True})
    if path == "/api/notes" and method == "GET":
        return respond(200, [i.value for i in sdk.kv.query(prefix="note:").items])
    if path == "/api/notes" and method == "POST":
        try:
            text = json.loads(event.get("body") or "{}")["text"]
        except (ValueError, KeyError, TypeError):
            return respond(400, {"error": {"code": "bad_note", "message": 'send {"text": "..."}'}})
        note = {"id": uuid.uuid4().hex[:8], "text": str(text)[:500]}
        sdk.kv.put(f"note:{note['id']}", note)
        return respond(201, note)
    return respond(404, {"error": {"code": "not_found", "message": f"no route {method} {path}"}})
