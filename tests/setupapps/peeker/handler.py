"""A hostile neighbour: tries to read another app's data directory."""

import os


def handler(event, context):
    path = event["queryStringParameters"]["path"]
    try:
        found = sorted(os.listdir(path))
        return {"statusCode": 200, "body": "listed " + ",".join(found)}
    except OSError as exc:
        return {"statusCode": 200, "body": f"{type(exc).__name__}: {exc.strerror}"}
