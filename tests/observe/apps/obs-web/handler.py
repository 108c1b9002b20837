"""What the observe tests drive: ?fail=1 raises, ?sleep=S sleeps, ?gate=PATH holds
the request until that file exists; every answer says the trace context it ran in."""

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
    gate = q.get("gate")
    while gate and not os.path.exists(gate):
        time.sleep(0.01)
    return {"traceparent": sdk.traceparent(), "carrier": sdk.trace_headers(),
            "header": (event.get("headers") or {}).get("traceparent")}
