"""Records every event its rules let through, in the shape it arrived."""

from skiff import sdk


def handler(event, context):
    if "detail-type" in event:  # EventBridge envelope
        sdk.kv.put(f"eb:{event['id']}", {"detail": event["detail"], "source": event["source"]})
    else:  # CloudEvent
        sdk.kv.put(f"ce:{event['id']}", {"data": event.get("data"),
                                         "traceparent": event.get("traceparent")})
    return {"ok": True}
