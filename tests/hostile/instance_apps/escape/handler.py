"""A handler that cuts itself loose from the platform (closes its instance socket,
or writes a malformed frame on it) and keeps running; with how=runner it first
starts a process that forks and exits in a loop, so its pid keeps moving (the
race a read-the-list-then-kill loop loses)."""

import ctypes
import os
import time

from skiff.instance.worker import rpc


def handler(event, context):
    ctypes.CDLL(None).prctl(15, b"skiffescape", 0, 0, 0)  # PR_SET_NAME: found by name
    how = (event.get("queryStringParameters") or {}).get("how", "close")
    if how == "runner":
        if os.fork() == 0:
            rpc.sock.close()  # the instance's end only: its parent closes its own below
            ctypes.CDLL(None).prctl(15, b"skiffrunner", 0, 0, 0)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if os.fork():
                        os._exit(0)
                except OSError:
                    pass
            os._exit(0)
        time.sleep(0.2)
    if how in ("close", "runner"):
        rpc.sock.close()
    else:
        rpc.sock.sendall(b"\x00\x00\x00\x08notmsgpk")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pass
    return {"escaped": False}
