"""What the observe tests drive: ?fail=1 raises, ?sleep=S sleeps, ?gate=PATH holds
the request until that file exists, ?sdk=1 makes skiff.sdk calls (a KV increment, a
message to obs-jobs), ?publish=1 publishes an obs.fanout event; every answer says the trace context it ran in."""

import os
import time

from skiff import sdk


def handler(event, context):
    q = event.get("queryStringParameters") or {}
    print(f"obs-web serving {event.get('rawPath')}")
    if q.get("fail"):
        raise ValueError("obs-web was asked to fail")
    if q.get("sleep"):
        time.sleep(float(q["sleep"]))
    if q.get("sdk"):
        sdk.kv.incr("obs-web-hits")
        sdk.queue("obs-jobs").send({"from": "obs-web"})
    if q.get("publish"):
        sdk.publish("obs.fanout", "obs-web", {"n": 1})
    gate = q.get("gate")
    while gate and not os.path.exists(gate):
        time.sleep(0.01)
    return {"traceparent": sdk.traceparent(), "carrier": sdk.trace_headers(),
            "header": (event.get("headers") or {}).get("traceparent")}
