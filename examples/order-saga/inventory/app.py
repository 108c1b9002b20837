"""Reserves stock for placed orders; releases it when payment fails (compensation)."""

import contextlib
import os

from skiff import sdk
from skiff.store.kv import ConditionFailed


def _stock(sku):
    """The stock counter of a SKU, created with INITIAL_STOCK the first time."""
    key = f"stock:{sku}"
    with contextlib.suppress(ConditionFailed):
        sdk.kv.put(key, int(os.environ["INITIAL_STOCK"]), if_absent=True)
    return key


@sdk.idempotent(key=lambda event: f"{event['type']}:{event['data']['order_id']}")
def handler(event, context):
    order = event["data"]
    if event["type"] == "order.placed":
        key = _stock(order["sku"])
        left = sdk.kv.incr(key, -order["qty"])
        if left < 0:
            sdk.kv.incr(key, order["qty"])
            sdk.publish("inventory.unavailable", source="shop.inventory", data=order)
            return {"reserved": False}
        sdk.kv.put(f"reservation:{order['order_id']}", order)
        sdk.publish("inventory.reserved", source="shop.inventory", data=order)
        return {"reserved": True, "left": left}
    # payment.failed: undo the reservation
    reservation = sdk.kv.get(f"reservation:{order['order_id']}")
    if reservation is not None:
        sdk.kv.incr(f"stock:{reservation.value['sku']}", reservation.value["qty"])
        sdk.kv.delete(f"reservation:{order['order_id']}")
    sdk.publish("inventory.released", source="shop.inventory", data=order)
    return {"released": reservation is not None}
