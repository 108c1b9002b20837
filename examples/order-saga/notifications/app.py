"""Tells the customer how their order ended (recorded instead of e-mailed)."""

from skiff import sdk

MESSAGES = {"order.fulfilled": "Your order is on its way.",
            "order.cancelled": "Your order was cancelled; you have not been charged."}


def handler(event, context):
    order_id = event["data"]["order_id"]
    sdk.kv.put(f"sent:{order_id}", {"message": MESSAGES[event["type"]]})
    return {"notified": order_id}
