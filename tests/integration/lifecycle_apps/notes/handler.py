"""Counts hits in its KV; records each message of its queue there."""

from skiff import sdk


def handler(event, context):
    if "Records" in event:
        for record in event["Records"]:
            sdk.kv.put(f"seen:{record['body']}", True)
        return {}
    if event.get("rawPath", "/").endswith("/hit"):
        return {"hits": sdk.kv.incr("hits")}
    return {"hits": sdk.kv.value("hits")}
