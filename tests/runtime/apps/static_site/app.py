def handler(event, context):
    return {"api": event["rawPath"]}
