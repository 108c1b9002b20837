"""A CPU hog: each request spins in the handler for ``seconds`` (default 1)."""

import time


def handler(event, context):
    params = event.get("queryStringParameters") or {}
    until = time.perf_counter() + float(params.get("seconds", "1"))
    n = 0
    while time.perf_counter() < until:
        n += 1
    return {"spins": n}
