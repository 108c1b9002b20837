"""Messages between the gateway and a zygote over a SOCK_SEQPACKET socket
(one datagram per message; the instance socket rides along as SCM_RIGHTS)."""

from __future__ import annotations

import ctypes
import signal

import msgspec


class Hello(msgspec.Struct, tag="hello"):
    pid: int
    error: str = ""  # a pre-initialized app that failed its init: the traceback


class Fork(msgspec.Struct, tag="fork"):
    token: int
    cgroup_procs: list[str] = []  # the instance writes its pid here first
    namespaces: bool = False  # a pid namespace of its own (and a network one if network)
    network: bool = False


class Forked(msgspec.Struct, tag="forked"):
    token: int
    pid: int  # 0: the fork failed


class Exited(msgspec.Struct, tag="exited"):
    pid: int
    returncode: int  # negative: killed by that signal, as in subprocess


ControlMessage = Hello | Fork | Forked | Exited
encode = msgspec.msgpack.Encoder().encode
decode = msgspec.msgpack.Decoder(ControlMessage).decode

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies, so a killed
    platform never leaves zygotes or instances behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
