import os


def handler(event, context):
    who = (event.get("queryStringParameters") or {}).get("name", "world")
    print(f"greeting {who}")
    return {
        "greeting": f"{os.environ['GREETING']}, {who}",
        "path": event.get("rawPath"),
        "request_id": context.aws_request_id,
        "pid": os.getpid(),
        "event": event if "rawPath" not in event else None,
    }
