"""bench.multinode: a hello handler that says which node served it (the port the
gateway saw, X-Forwarded-Port, which it sets for untrusted clients)."""


def handler(event, context):
    return {"port": (event.get("headers") or {}).get("x-forwarded-port")}
