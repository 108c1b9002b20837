"""Fetches ?url= through the egress proxy (HTTP_PROXY) and says what came back;
also a target of obs-web's published obs.fanout events."""

import urllib.error
import urllib.request


def handler(event, context):
    if "Records" in event or "specversion" in event or "detail-type" in event:
        print(f"obs-egress got event {event.get('id')}")
        return {}
    url = (event.get("queryStringParameters") or {}).get("url")
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return {"status": resp.status, "body": resp.read().decode()}
    except urllib.error.HTTPError as exc:  # the proxy's refusal
        return {"status": exc.code, "denied": exc.headers.get("X-Skiff-Egress-Denied")}
