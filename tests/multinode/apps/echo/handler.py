"""Says which node served it: the port the gateway saw (X-Forwarded-Port, set by
the gateway for untrusted clients) and the version of the code it runs."""

VERSION = "v1"


def handler(event, context):
    headers = event.get("headers") or {}
    return {"port": headers.get("x-forwarded-port"), "version": VERSION}
