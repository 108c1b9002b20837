"""Fails each message on its first two deliveries (so it dead-letters after
maxReceiveCount 2) and succeeds from the third (after a redrive)."""

from skiff import sdk


def handler(event, context):
    failures = []
    for record in event["Records"]:
        if sdk.kv.incr(f"tries:{record['body']}") <= 2:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
