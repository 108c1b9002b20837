"""One step of a test workflow: counts its runs and its side effects (KV), holds while
the event says "hold" and the `release` gate is closed (so the platform can be killed
with the task in flight), and fails when the event says "fail"."""

import time

from skiff import sdk


class PaymentDeclined(Exception):
    pass


@sdk.idempotent(key=lambda event: event["token"])
def effect(event, context=None):
    sdk.kv.incr(f"effects:{event['step']}")
    return {"effect": event["step"]}


def handler(event, context):
    sdk.kv.incr(f"runs:{event['step']}")
    effect(event)
    if event.get("fail"):
        raise PaymentDeclined(f"step {event['step']} declined")
    while event.get("hold") and sdk.kv.get("release") is None:
        time.sleep(0.05)
    return {"step": event["step"], "request": context.aws_request_id,
            "seen": event.get("input")}
