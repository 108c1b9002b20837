"""Answers with its revision's greeting; /fail answers 500; every call logs a line
with its (decoded) query: the text a hostile caller controls."""

GREETING = "hello v1"


def handler(event, context):
    path = event.get("rawPath", "/")
    query = event.get("queryStringParameters") or {}
    print(f"served {path} {query.get('q', '')} for {context.aws_request_id}")
    if path.endswith("/fail"):
        return {"statusCode": 500, "body": "failed on purpose"}
    return {"statusCode": 200, "body": GREETING}
