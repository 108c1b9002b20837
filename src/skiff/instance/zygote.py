"""The zygote: a warm process that has the runtime imported and forks instances.

Started once per dependency environment as ``python -I -m skiff.instance.zygote FD``.
A fork of this process costs about a millisecond, against tens of
milliseconds for a fresh interpreter; ``gc.freeze()`` before forking keeps the
children from dirtying the shared copy-on-write pages on their first collection.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import selectors
import signal
import socket
import sys

from skiff.instance import control

PRELOAD = ("skiff.runtime", "skiff.instance.worker", "msgspec", "json", "asyncio",
           "base64", "email.utils", "traceback", "uuid")


def _preload(extra: list[str]) -> None:
    for name in (*PRELOAD, *extra):
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a preload is an optimisation only
            print(f"skiff zygote: preload of {name!r} failed: {exc}", file=sys.stderr)


def _preinit(load_json: str) -> str:
    """Run a pre-initialized app's init here, once; '' or the failure's summary."""
    import traceback

    import msgspec

    from skiff.instance import protocol, worker

    try:
        worker.preinit(msgspec.json.decode(load_json.encode(), type=protocol.Load))
    except BaseException as exc:  # noqa: BLE001 - reported to the gateway
        summary = getattr(exc, "traceback_summary", "") or "".join(
            traceback.format_exception(exc)[-4:])
        return f"{exc}\n{summary}"
    return ""


def _child(fd: int, ctl: socket.socket, sel: selectors.BaseSelector, wake_r: int,
           wake_w: int) -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sel.close()
    ctl.close()
    os.close(wake_r)
    os.close(wake_w)
    control.die_with_parent()
    code = 0
    try:
        from skiff.instance import worker

        worker.serve(socket.socket(fileno=fd))
    except BaseException:  # noqa: BLE001 - never fall back into the zygote loop
        code = 1
    os._exit(code)


def main(fd: int) -> None:
    control.die_with_parent()
    ctl = socket.socket(fileno=fd)
    extra = [m for m in os.environ.get("SKIFF_PRELOAD", "").split(",") if m]
    _preload(extra)
    error = ""
    preinit = os.environ.get("SKIFF_PREINIT")
    if preinit:
        error = _preinit(preinit)
    gc.collect()
    gc.freeze()

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: None)  # the gateway closes ctl to stop us

    sel = selectors.DefaultSelector()
    sel.register(ctl, selectors.EVENT_READ, "ctl")
    sel.register(wake_r, selectors.EVENT_READ, "sig")
    ctl.send(control.encode(control.Hello(pid=os.getpid(), error=error)))
    if error:
        os._exit(1)
    children: set[int] = set()

    while True:
        for key, _ in sel.select():
            if key.data == "sig":
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
                _reap(ctl, children)
                continue
            try:
                data, fds, _flags, _addr = socket.recv_fds(ctl, 4096, 4)
            except InterruptedError:
                continue
            except OSError:
                data, fds = b"", []
            if not data:
                for pid in children:
                    _kill(pid)
                os._exit(0)
            msg = control.decode(data)
            if not isinstance(msg, control.Fork) or not fds:
                for extra_fd in fds:
                    os.close(extra_fd)
                continue
            pid = os.fork()
            if pid == 0:
                _child(fds[0], ctl, sel, wake_r, wake_w)
            for extra_fd in fds:
                os.close(extra_fd)
            children.add(pid)
            ctl.send(control.encode(control.Forked(token=msg.token, pid=pid)))


def _reap(ctl: socket.socket, children: set[int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        ctl.send(control.encode(control.Exited(pid=pid, returncode=os.waitstatus_to_exitcode(status))))


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    main(int(sys.argv[1]))
