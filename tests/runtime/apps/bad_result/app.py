def handler(event, context):
    return {"tags", "not", "json"}
