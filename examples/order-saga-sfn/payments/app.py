"""Charges an order once (idempotent on the order id); amounts over the card limit
are declined with PaymentDeclined, which the state machine catches to compensate."""

import os

from skiff import sdk


class PaymentDeclined(Exception):
    pass


@sdk.idempotent(key=lambda event: event["order_id"])
def handler(event, context):
    if event["amount"] > float(os.environ["CARD_LIMIT"]):
        raise PaymentDeclined(f"card declined for {event['amount']}")
    sdk.kv.incr("charges")
    sdk.kv.put(f"charge:{event['order_id']}", {"amount": event["amount"]})
    return {"charged": event["amount"]}
