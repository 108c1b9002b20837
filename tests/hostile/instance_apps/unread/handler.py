"""Asks the platform for a 400 KiB value 2,500 times in raw Call frames on its
instance socket and never reads a reply."""

import threading

from skiff import sdk
from skiff.instance import protocol as p
from skiff.instance.worker import rpc

VALUE = "x" * (400 * 1024 - 64)


def handler(event, context):
    sdk.kv.put("big", VALUE)
    frames = b"".join(p.encode(p.Call(id=10_000 + i, op="kv.get", args={"key": "big"}))
                      for i in range(2500))
    # from a thread: once the gateway stops reading, sendall blocks, and so would we
    threading.Thread(target=rpc.sock.sendall, args=(frames,), daemon=True).start()
    threading.Event().wait(60)
    return {"read": False}
