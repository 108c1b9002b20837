"""Charges reserved orders, once: a redelivered event returns the stored result."""

import os

from skiff import sdk


@sdk.idempotent(key=lambda event: event["data"]["order_id"])
def handler(event, context):
    order = event["data"]
    if order["amount"] > float(os.environ["CARD_LIMIT"]):
        sdk.publish("payment.failed", source="shop.payments",
                    data={**order, "reason": "card declined"})
        return {"charged": False}
    sdk.kv.incr("charges")
    sdk.kv.put(f"charge:{order['order_id']}", {"amount": order["amount"]})
    sdk.publish("payment.charged", source="shop.payments", data=order)
    return {"charged": True}
