"""Consumes the orders queue; reports bodies containing 'poison' as failed items."""

from skiff import sdk


def handler(event, context):
    failures = []
    for record in event["Records"]:
        sdk.kv.incr(f"seen:{record['body']}")
        if "poison" in record["body"]:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
