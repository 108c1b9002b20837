"""A handler that cuts itself loose from the platform (closes its instance socket,
or writes a malformed frame on it) and keeps running."""

import ctypes
import time

from skiff.instance.worker import rpc


def handler(event, context):
    ctypes.CDLL(None).prctl(15, b"skiffescape", 0, 0, 0)  # PR_SET_NAME: found by name
    how = (event.get("queryStringParameters") or {}).get("how", "close")
    if how == "close":
        rpc.sock.close()
    else:
        rpc.sock.sendall(b"\x00\x00\x00\x08notmsgpk")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pass
    return {"escaped": False}
