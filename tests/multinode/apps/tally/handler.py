"""Counts every delivery of a message (``seen:``) and books each one once
(``booked:``, ``effects``) with @idempotent, whichever node runs it and however
often it is delivered.

While the ``hold`` KV key is true, attempts wait inside the idempotent run,
after their record is in progress and before the side effect, so a test can
kill -9 a node exactly there; ``held`` counts the attempts that waited."""

import json
import time

from skiff import sdk


@sdk.idempotent(key=lambda msg: msg["id"])
def book(msg, context=None):
    if sdk.kv.value("hold"):
        sdk.kv.incr("held")
        while sdk.kv.value("hold"):
            time.sleep(0.05)
    sdk.kv.incr(f"booked:{msg['id']}")
    sdk.kv.incr("effects")
    return {"booked": msg["id"]}


def handler(event, context):
    if "Records" in event:  # queue messages
        msgs = [json.loads(r["body"]) for r in event["Records"]]
    else:  # an async invocation of the HTTP route: the API Gateway event
        msgs = [json.loads(event["body"])]
    for msg in msgs:
        sdk.kv.incr(f"seen:{msg['id']}")
        book(msg, context)  # its in-progress lease: this invocation's remaining time
    return {"done": [m["id"] for m in msgs]}
