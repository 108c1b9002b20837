"""Holds each request until the file named by ?gate= exists, so tests can
fill the pool deterministically."""

import os
import time


def handler(event, context):
    gate = (event.get("queryStringParameters") or {}).get("gate")
    while gate and not os.path.exists(gate):
        time.sleep(0.01)
    return {"pid": os.getpid()}
