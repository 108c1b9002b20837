"""A plain Lambda handler, no framework: kind is detected (no spec.kind)."""

import json
import os


def handler(event, context):
    if "requestContext" not in event:  # a direct invocation
        return {"echo": event, "function": context.function_name}
    name = (event.get("queryStringParameters") or {}).get("name", "world")
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Path": event["rawPath"]},
        "cookies": ["seen=1; Path=/"],
        "body": json.dumps({
            "message": f"{os.environ['GREETING']}, {name}",
            "method": event["requestContext"]["http"]["method"],
            "cookies": event.get("cookies", []),
            "body": event.get("body"),
            "memory": context.memory_limit_in_mb,
            "cwd_has_app": os.path.exists("app.py"),
        }),
    }
