"""The hello Lambda handler every cold-start and warm benchmark runs, on Skiff
and (through thin adapters in ``bench/apps/peers``) on each peer."""


def handler(event, context):
    params = event.get("queryStringParameters") or {}
    return {"message": f"hello, {params.get('name', 'world')}"}
