import json


def lambda_handler(event, context):
    """Sample pure Lambda function, as `sam init` lays it out.

    event: API Gateway Lambda Proxy Input Format (REST API)
    """
    return {
        "statusCode": 200,
        "body": json.dumps({"message": "hello world", "method": event["httpMethod"],
                            "path": event["path"], "resource": event["resource"]}),
    }
