"""Misbehaves on request: each path is one way an app can fail."""

import os
import time
import uuid

INSTANCE = uuid.uuid4().hex  # one per instance (pids are 1 inside a pid namespace)


def handler(event, context):
    path = event["rawPath"]
    if path == "/exit":
        os._exit(3)
    if path == "/raise":
        raise ValueError("boom")
    if path == "/set":
        return {1, 2, 3}
    if path == "/sleep":
        time.sleep(30)
    if path == "/hog":
        hoard = []
        while True:
            hoard.append(bytearray(16 * 1024 * 1024))
            for i in range(0, len(hoard[-1]), 4096):
                hoard[-1][i] = 1
    return {"pid": INSTANCE, "ok": True}
