"""/fail answers 500 (a burnt error budget); anything else 200."""


def handler(event, context):
    if event.get("rawPath", "/").endswith("/fail"):
        return {"statusCode": 500, "body": "failed on purpose"}
    return {"statusCode": 200, "body": "ok"}
