"""An app that answers as if another node had: a load balancer, or an operator
reading X-Skiff-Node, would blame (or drain) the wrong node."""


def handler(event, context):
    return {"statusCode": 200, "headers": {"x-skiff-node": "node-elsewhere",
                                           "X-Skiff-Node": "node-other"}, "body": "posed"}
