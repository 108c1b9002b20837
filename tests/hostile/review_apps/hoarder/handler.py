"""A slow app: a request sleeps ``?s=`` seconds, so its queued siblings (and their
bodies) wait in the gateway."""

import time


def handler(event, context):
    time.sleep(float((event.get("queryStringParameters") or {}).get("s", "0")))
    return {"statusCode": 200, "body": "slept"}
