"""A WSGI app (a plain callable: what Flask's stream_with_context produces).
/stream yields a first line, waits until another instance of the app puts "open"
in the app's KV (via /open), then yields the last line."""

import time

from skiff import sdk


def stream():
    yield b"first\n"
    while getattr(sdk.kv.get("gate"), "value", None) != "open":
        time.sleep(0.05)
    yield b"last\n"


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/stream":
        start_response("200 OK", [("content-type", "text/plain")])
        return stream()
    if path == "/open":
        sdk.kv.put("gate", "open")
    start_response("200 OK", [("content-type", "text/plain"), ("content-length", "2")])
    return [b"ok"]
