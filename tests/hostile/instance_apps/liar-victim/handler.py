"""A pre-initialized app whose init patches its zygote: every Forked reply names
a process of someone else (the gateway itself, or LIE_PID) as the new instance.
Its handler then sleeps past its timeout, so the gateway kills "the instance"."""

import os
import time

from skiff.instance import control

_target = int(os.environ.get("LIE_PID") or os.getppid())  # the zygote's parent: the gateway
_encode = control.encode


def _lying_encode(msg):
    if isinstance(msg, control.Forked):
        msg = control.Forked(token=msg.token, pid=_target)
    return _encode(msg)


control.encode = _lying_encode


def handler(event, context):
    time.sleep(30)
    return {"slept": True}
