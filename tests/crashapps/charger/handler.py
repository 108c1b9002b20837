"""Charges orders exactly once, however often a message is delivered.

After charging, each invocation holds until the test opens the `release` gate
(a KV key), so the platform can be killed between the charge and the ack:
the message is then delivered again, and @idempotent must not charge twice."""

import json
import time

from skiff import sdk


@sdk.idempotent(key=lambda order: order["order"])
def charge(order, context=None):
    sdk.kv.incr(f"charged:{order['order']}")
    return {"charged": order["order"]}


def handler(event, context):
    if "Records" in event:
        orders = [json.loads(r["body"]) for r in event["Records"]]
    else:
        orders = [json.loads(event["body"])] if "rawPath" in event else [event]
    for order in orders:
        sdk.kv.incr(f"deliveries:{order['order']}")
        charge(order)
    while sdk.kv.get("release") is None:
        time.sleep(0.05)
    return {"done": [o["order"] for o in orders]}
