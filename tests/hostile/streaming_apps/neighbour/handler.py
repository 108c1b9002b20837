"""A well-behaved app served throughout the attacks."""


def handler(event, context):
    return {"ok": True}
