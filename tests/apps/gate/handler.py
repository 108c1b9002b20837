"""Holds each request until the file named by ?gate= exists, so tests can
fill the pool deterministically."""

import os
import time
import uuid

INSTANCE = uuid.uuid4().hex  # one per instance (pids are 1 inside a pid namespace)


def handler(event, context):
    gate = (event.get("queryStringParameters") or {}).get("gate")
    while gate and not os.path.exists(gate):
        time.sleep(0.01)
    return {"pid": INSTANCE}
