"""Counts its fires per scheduled time (the EventBridge event's ``time``)."""

from skiff import sdk


def handler(event, context):
    sdk.kv.incr(f"fired:{event.get('time')}")
    return {"fired": event.get("time")}
