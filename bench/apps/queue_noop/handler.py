"""The no-op Lambda handler of bench.queues.

``?i=N`` (a latency sample) stores the time the handler started under
``start:N``; ``?count=0`` does nothing at all; otherwise it counts itself in
``done`` so the harness knows when a throughput run is over without polling
every invocation's status.
"""

import time

from skiff import sdk


def handler(event, context):
    started = time.time()
    params = event.get("queryStringParameters") or {}
    if "i" in params:
        sdk.kv.put(f"start:{params['i']}", started)
    elif params.get("count") != "0":
        sdk.kv.incr("done")
    return {"ok": True}
