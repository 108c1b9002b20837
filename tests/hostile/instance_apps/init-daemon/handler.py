"""Init (in the app zygote) leaves a daemon behind: double fork, setsid, sleep."""

import ctypes
import os
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        ctypes.CDLL(None).prctl(15, b"initdaemon", 0, 0, 0)  # PR_SET_NAME: found by name
        time.sleep(600)
    os._exit(0)
os.wait()


def handler(event, context):
    return {"ok": True}
