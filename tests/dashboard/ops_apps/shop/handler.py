import urllib.request

VERSION = "v1"


def handler(event, context):
    path = event.get("rawPath", "/")
    if path.endswith("/boom"):
        return {"statusCode": 500, "body": "boom"}
    if path.endswith("/call"):  # a host no app declares: the egress proxy denies and logs it
        try:
            urllib.request.urlopen("http://api.undeclared.example/", timeout=5)
        except Exception as exc:  # noqa: BLE001 - any refusal will do
            return {"called": type(exc).__name__}
    return {"version": VERSION}
