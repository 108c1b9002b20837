"""Reserves stock for an order, and releases it (the saga's compensating step).

Both are idempotent on the order id: a task the executor runs again after a crash
(same order, same action) moves no stock twice."""

import contextlib
import os

from skiff import sdk
from skiff.store.kv import ConditionFailed


class OutOfStock(Exception):
    pass


@sdk.idempotent(key=lambda event: f"{event['action']}:{event['order_id']}")
def handler(event, context):
    key, qty = f"stock:{event['sku']}", event["qty"]
    with contextlib.suppress(ConditionFailed):  # the first order of a SKU creates it
        sdk.kv.put(key, int(os.environ["INITIAL_STOCK"]), if_absent=True)
    if event["action"] == "reserve":
        left = sdk.kv.incr(key, -qty)  # atomic: two orders never take the same unit
        if left < 0:
            sdk.kv.incr(key, qty)
            raise OutOfStock(f"only {left + qty} of {event['sku']} left")
        return {"reserved": qty}
    sdk.kv.incr(key, qty)  # release: the compensating step
    return {"released": qty}
