"""The order saga's front door and record.

HTTP: POST / places an order; GET /<id> shows it. Events from the other steps
update the order's status and history. A schedule reconciles stuck orders.
"""

import json
import time
import uuid

from skiff import sdk
from skiff.store.kv import ConditionFailed

STATUS = {  # event type -> the order status it leads to
    "inventory.reserved": "reserved",
    "inventory.unavailable": "cancelled",
    "payment.charged": "paid",
    "payment.failed": "payment_failed",
    "inventory.released": "cancelled",
    "order.fulfilled": "fulfilled",
}
STUCK_AFTER = 600  # seconds without progress before reconciliation flags an order


def _reply(status, body):
    return {"statusCode": status, "headers": {"content-type": "application/json"},
            "body": json.dumps(body)}


def place(event):
    try:
        order = json.loads(event.get("body") or "{}")
        sku, qty, amount = str(order["sku"]), int(order["qty"]), float(order["amount"])
    except (ValueError, KeyError, TypeError):
        return _reply(400, {"error": "send JSON with sku, qty and amount"})
    if qty < 1 or amount <= 0:
        return _reply(400, {"error": "qty and amount must be positive"})
    order_id = uuid.uuid4().hex[:12]
    now = time.time()
    record = {"id": order_id, "sku": sku, "qty": qty, "amount": amount, "status": "placed",
              "history": ["placed"], "updated": now}
    sdk.kv.put(f"order:{order_id}", record)
    sdk.publish("order.placed", source="shop.orders", subject=order_id,
                data={"order_id": order_id, "sku": sku, "qty": qty, "amount": amount})
    return _reply(202, record)


def advance(event):
    """One saga step happened: record it (idempotent: a repeated event changes nothing)."""
    data = event.get("data") or {}
    key = f"order:{data.get('order_id')}"
    for _ in range(5):  # optimistic concurrency: retry on a concurrent update
        item = sdk.kv.get(key)
        if item is None:
            return {"ignored": "unknown order"}
        order = item.value
        step = event["type"]
        if step in order["history"]:
            return {"duplicate": step}
        order["history"].append(step)
        order["status"] = STATUS.get(step, order["status"])
        order["updated"] = time.time()
        try:
            sdk.kv.put(key, order, if_version=item.version)
        except ConditionFailed:
            continue
        if order["status"] == "cancelled" and step == "inventory.released":
            sdk.publish("order.cancelled", source="shop.orders", data={"order_id": order["id"]})
        return {"order": order["id"], "status": order["status"]}
    raise RuntimeError(f"could not update {key}")


def reconcile(now=None):
    now = now or time.time()
    stuck = []
    page = sdk.kv.query("order:")
    for item in page.items:
        order = item.value
        if order["status"] not in ("fulfilled", "cancelled") and now - order["updated"] > STUCK_AFTER:
            stuck.append(order["id"])
    sdk.kv.put("reconciliation:last", {"at": now, "stuck": stuck})
    return {"checked": len(page.items), "stuck": stuck}


def handler(event, context):
    if "rawPath" in event:
        method = event["requestContext"]["http"]["method"]
        path = event["rawPath"].strip("/")
        if method == "POST" and not path:
            return place(event)
        if method == "GET" and path:
            item = sdk.kv.get(f"order:{path}")
            return _reply(200, item.value) if item else _reply(404, {"error": "no such order"})
        return _reply(404, {"error": "POST / or GET /<order id>"})
    if event.get("detail-type") == "Scheduled Event":
        return reconcile()
    if "specversion" in event:
        return advance(event)
    return {"ignored": True}
