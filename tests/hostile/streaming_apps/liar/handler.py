"""A hostile app that writes stream frames of its own on its instance socket."""

import time

from skiff import ipc as p
from skiff.instance.worker import rpc


def handler(event, context):
    send, own = rpc.channel.send, context.aws_request_id
    how = (event.get("queryStringParameters") or {}).get("how")
    if how == "other-id":
        send(p.ResponseStart(id="someone-else", status=200))
        send(p.BodyChunk(id="someone-else", data=b"forged"))
    elif how == "chunk-not-streaming":
        send(p.BodyChunk(id=own, data=b"no head"))
    elif how == "after-end":
        send(p.ResponseStart(id=own, status=200))
        send(p.BodyChunk(id=own, data=b"done", more=False))
        send(p.BodyChunk(id=own, data=b"and more"))
    elif how == "giant":
        send(p.ResponseStart(id=own, status=200))
        send(p.BodyChunk(id=own, data=b"x" * (p.STREAM_WINDOW + 1)))
    elif how == "head-twice":
        send(p.ResponseStart(id=own, status=200))
        send(p.ResponseStart(id=own, status=200, headers=[("x-again", "1")]))
    time.sleep(30)  # killed long before
    return {"survived": True}
