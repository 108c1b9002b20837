import uuid

INSTANCE = uuid.uuid4().hex  # one per instance (pids are 1 inside a pid namespace)


def handler(event, context):
    return {"pid": INSTANCE}
