"""Ships paid orders."""

from skiff import sdk


def handler(event, context):
    order = event["data"]
    sdk.kv.put(f"shipment:{order['order_id']}", {"sku": order["sku"], "qty": order["qty"]})
    sdk.publish("order.fulfilled", source="shop.fulfillment", data=order)
    return {"shipped": order["order_id"]}
