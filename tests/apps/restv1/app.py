"""A REST API (payload 1.0) Lambda handler as SAM's hello-world template writes one."""

import json


def lambda_handler(event, context):
    if event["path"] == "/boom":
        raise RuntimeError("ledger database at 10.0.0.7 refused user ledger_admin")
    return {
        "statusCode": 200,
        "multiValueHeaders": {"x-seen": ["one", "two"]},
        "body": json.dumps({
            "method": event["httpMethod"], "path": event["path"],
            "resource": event["resource"], "proxy": (event["pathParameters"] or {}).get("proxy"),
            "tags": (event["multiValueQueryStringParameters"] or {}).get("tag"),
            "stage": event["requestContext"]["stage"],
        }),
    }
