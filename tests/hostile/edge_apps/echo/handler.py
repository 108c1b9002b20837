def handler(event, context):
    http = event["requestContext"]["http"]
    return {"sourceIp": http["sourceIp"], "headers": event["headers"]}
