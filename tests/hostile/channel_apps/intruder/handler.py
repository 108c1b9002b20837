"""A hostile app that talks to the platform over its own channels, bypassing the SDK:
raw frames on its instance socket, and raw connections to its egress socket."""

import os
import resource
import socket
import time
import urllib.error
import urllib.request

from skiff import sdk
from skiff.instance import protocol as p
from skiff.instance.worker import rpc

FORGED = "forged: revision deployed"


def _forge(q):
    """Log frames no print() would make: the platform's streams, other request ids,
    a line that pretends to be two."""
    send = rpc.channel.send
    send(p.Log(request_id="", stream="platform", line=f"{FORGED} (platform stream)"))
    send(p.Log(request_id="", stream="egress",
               line="CONNECT evil.test:443 allowed rule=* up=0B down=0B 0.0ms"))
    send(p.Log(request_id=q["victim"], stream="stdout", line="forged: victim request id"))
    send(p.Log(request_id=q["old"], stream="stdout", line="forged: old request id"))
    send(p.Log(request_id=q["own"], stream="stderr", line="honest: own request id"))
    send(p.Log(request_id="", stream="stdout",
               line=f"forged: one\n00:00:00 -        -         platform {FORGED}\r\x1b[2K"
                    "\u2028\u202eeno"))
    return "sent"


def _flood(q):
    """Many SDK calls at once, as raw Call frames, then read every answer."""
    n = int(q["n"])
    sock, send = rpc.sock, rpc.channel.send
    base = 1 << 40
    for i in range(n):
        send(p.Call(id=base + i, op="kv.put", args={"key": f"k{i % 100}", "value": "x" * 100}))
    answered = 0
    while answered < n:
        frame = p.recv_frame(sock)
        if frame is None:
            os._exit(0)
        msg = p.decode_to_instance(frame)
        if isinstance(msg, p.CallResult) and msg.id >= base:
            answered += 1
    return answered


def _hoard(q):
    """Open n connections to the egress socket and send nothing; hold them until released."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = []
    try:
        for _ in range(int(q["n"])):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(2)
            for _retry in range(500):  # a full listen backlog: wait for the accepts
                try:
                    s.connect(q["path"])
                    break
                except BlockingIOError:
                    time.sleep(0.01)
                except OSError:
                    s.close()
                    return len(held)
            else:
                s.close()
                break
            held.append(s)
        sdk.kv.put("hoarding", len(held))
        deadline = time.monotonic() + 50
        while time.monotonic() < deadline and sdk.kv.get("release") is None:
            time.sleep(0.05)
        return len(held)
    finally:
        for s in held:
            s.close()
        sdk.kv.delete("release")


def _fetch(q):
    try:
        with urllib.request.urlopen(q["url"], timeout=10) as resp:
            return {"status": resp.status, "body": resp.read(100).decode()}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read(300).decode()}


def handler(event, context):
    path = event["rawPath"]
    q = dict(event.get("queryStringParameters") or {})
    q.setdefault("own", context.aws_request_id)
    if path == "/forge":
        return {"result": _forge(q)}
    if path == "/flood":
        return {"answered": _flood(q)}
    if path == "/hoard":
        return {"held": _hoard(q)}
    if path == "/release":
        sdk.kv.put("release", True)
        return {"released": True}
    if path == "/fetch":
        return _fetch(q)
    return {"statusCode": 404, "body": "no such route"}
