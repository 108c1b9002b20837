"""A CDK/SAM-style HTTP API handler that reads its route and path parameters."""


def handler(event, context):
    return {"routeKey": event["routeKey"], "pathParameters": event.get("pathParameters"),
            "method": event["requestContext"]["http"]["method"]}
