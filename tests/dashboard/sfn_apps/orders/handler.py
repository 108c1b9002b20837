"""The charge step of orders-flow: declines a negative amount."""


class PaymentDeclined(Exception):
    pass


def handler(event, context):
    if "amount" not in event:  # an HTTP request
        return {"answered_by": "orders"}
    if event["amount"] < 0:
        raise PaymentDeclined(f"cannot charge {event['amount']}")
    return {"charged": event["amount"]}
