import os
import uuid

INSTANCE = uuid.uuid4().hex  # one per instance (pids are 1 inside a pid namespace)


def handler(event, context):
    who = (event.get("queryStringParameters") or {}).get("name", "world")
    print(f"greeting {who}")
    return {
        "greeting": f"{os.environ['GREETING']}, {who}",
        "path": event.get("rawPath"),
        "request_id": context.aws_request_id,
        "pid": INSTANCE,
        "event": event if "rawPath" not in event else None,
    }
