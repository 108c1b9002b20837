"""A pre-initialized app: its init runs once in the app zygote, not per instance."""

import os
import random
import socket

from skiff.runtime import on_restore

INIT_PID = os.getpid()
MODEL = {i: i * i for i in range(200_000)}  # stands in for an expensive model load
LEAKED = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # opened at init: must not be shared
RESTORED = []


@on_restore
def reopen():
    RESTORED.append(os.getpid())


def handler(event, context):
    try:
        LEAKED.getsockname()
        LEAKED.sendto(b"x", ("127.0.0.1", 9))
        leaked_usable = True
    except OSError:
        leaked_usable = False
    return {"init_pid": INIT_PID, "pid": os.getpid(), "model": len(MODEL),
            "restored": [os.getpid()] == RESTORED, "leaked_socket_usable": leaked_usable,
            "random": random.random()}
