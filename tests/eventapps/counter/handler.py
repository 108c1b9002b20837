"""The KV from a handler: counters, conditional puts, queries, and a queue send."""

from skiff import sdk
from skiff.store.kv import ConditionFailed


def handler(event, context):
    path = event.get("rawPath", "/")
    if path == "/hit":
        return {"hits": sdk.kv.incr("hits")}
    if path == "/claim":
        try:
            sdk.kv.put("owner", "first", if_absent=True)
            return {"claimed": True}
        except ConditionFailed:
            return {"claimed": False, "owner": sdk.kv.value("owner")}
    if path == "/list":
        return {"keys": [i.key for i in sdk.kv.query("").items]}
    if path == "/enqueue":
        return {"id": sdk.queue("orders").send({"from": "counter"})}
    return {"statusCode": 404, "body": "?"}
