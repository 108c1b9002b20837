"""Ships a paid order (records a tracking number in its KV)."""

from skiff import sdk


@sdk.idempotent(key=lambda event: event["order_id"])
def handler(event, context):
    tracking = f"TRK-{event['order_id']}"
    sdk.kv.put(f"shipment:{event['order_id']}", tracking)
    return {"tracking": tracking}
