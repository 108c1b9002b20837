def handler(event, context):
    return {"spare": True}
