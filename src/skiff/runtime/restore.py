"""Hooks for pre-initialized apps (``spec.scaling.preinit: true``).

With pre-initialization the app's module-level code runs once, in an app
zygote, and every instance is a fork of it. Whatever init created is then
shared by every instance — fine for code, data and models, wrong for
connections and random state. Skiff does the safe thing by default in each
new instance:

- ``random`` is reseeded (CPython does it at fork, and Skiff again, so a
  library that copied the generator state still differs per instance);
- every socket inherited from init is replaced by a dead one, so a client
  created at import fails loudly on first use instead of two instances
  interleaving bytes on one connection. Reconnect in an ``on_restore`` hook.

Then the app's own hooks run, in registration order::

    from skiff.runtime import on_restore

    db = connect()

    @on_restore
    def reconnect():
        global db
        db = connect()
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable

_hooks: list[Callable[[], object]] = []


def on_restore(fn: Callable[[], object]) -> Callable[[], object]:
    """Register ``fn`` to run in each instance forked from a pre-initialized app."""
    _hooks.append(fn)
    return fn


def restore(keep_fds: set[int]) -> int:
    """Make a fresh fork safe, then run the app's hooks. Returns sockets replaced."""
    random.seed()
    replaced = 0
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in keep_fds:
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            dead, other = socket.socketpair()
            other.close()
            os.dup2(dead.fileno(), fd)
            dead.close()
            replaced += 1
    for hook in _hooks:
        hook()
    return replaced
