"""A well-behaved app: answers, keeps a KV counter, fetches its upstream through egress."""

import urllib.request

from skiff import sdk


def handler(event, context):
    path = event["rawPath"]
    if path == "/kv":
        return {"hits": sdk.kv.incr("hits"), "item": sdk.kv.get("hits") is not None}
    if path == "/fetch":
        url = (event.get("queryStringParameters") or {})["url"]
        with urllib.request.urlopen(url, timeout=10) as resp:
            return {"status": resp.status, "body": resp.read(100).decode()}
    return {"ok": True}
