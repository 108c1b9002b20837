"""One app, deployed under many names and manifests by tests/hostile/test_tenancy.py:
each path does one thing with the platform's services and reports the outcome."""

import os
import time

from skiff import sdk
from skiff.errors import SkiffError


def _try(fn):
    try:
        return {"ok": True, "result": fn()}
    except SkiffError as exc:
        return {"ok": False, "code": exc.code, "status": exc.status}


def handler(event, context):
    if "Records" in event:  # a queue batch: count what arrived, by body
        for record in event["Records"]:
            sdk.kv.incr("got:" + record["body"])
        return {}
    path = event.get("rawPath", "/")
    q = event.get("queryStringParameters") or {}
    app = os.environ["SKIFF_APP"]
    if path.endswith("/send"):
        return _try(lambda: sdk.queue(q["queue"]).send(q.get("body", f"from {app}")))
    if path.endswith("/put"):
        return _try(lambda: sdk.kv.put(q["key"], q["value"]).version)
    if path.endswith("/get"):
        return _try(lambda: sdk.kv.value(q["key"]))
    if path.endswith("/keys"):
        return _try(lambda: [i.key for i in sdk.kv.query("").items])
    if path.endswith("/print"):  # n lines a second, for `seconds` seconds
        for second in range(int(q.get("seconds", "1"))):
            if second:
                time.sleep(1.05)  # the next second of the platform's line-rate window
            for i in range(int(q.get("n", "1"))):
                print(f"{q.get('tag', 'line')} {second}:{i}")
        return {"ok": True}
    return {"app": app, "path": path}
