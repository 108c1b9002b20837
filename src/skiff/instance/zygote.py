"""The zygote: a warm process that has the runtime imported and forks instances.

Started once per dependency environment as ``python -I -m skiff.instance.zygote FD``.
A fork of this process costs about a millisecond, against tens of
milliseconds for a fresh interpreter; ``gc.freeze()`` before forking keeps the
children from dirtying the shared copy-on-write pages on their first collection.

What its instances can import is the app's code, the app's environment, the
standard library and Skiff's runtime (``skiff`` and ``msgspec``, all the runtime
imports beyond the standard library) — never the platform's other packages, so a
dependency missing from requirements.txt fails here as it would elsewhere. A
dependency environment is built that way (environments.py); the platform's own
interpreter, which serves apps without requirements, has its site-packages taken
off ``sys.path`` once the runtime is imported (:func:`isolated_path`).
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
import sysconfig

from skiff.instance import control

PRELOAD = ("skiff.runtime", "skiff.instance.worker", "skiff.instance.seccomp", "skiff.sdk",
           "msgspec", "json", "asyncio",
           "base64", "email.utils", "traceback", "uuid")


def _preload(names: tuple[str, ...] | list[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a preload is an optimisation only
            print(f"skiff zygote: preload of {name!r} failed: {exc}", file=sys.stderr)


# What the runtime imports beyond the standard library (measured with -X importtime
# over the preload and the worker's lazy imports: only these, and typing_extensions,
# which msgspec takes when it finds it and does without otherwise).
RUNTIME_PACKAGES = ("skiff", "msgspec")
# Written into a dependency environment's site-packages: its sys.path is built isolated.
ISOLATED_MARKER = "_skiff_runtime.pth"


def isolated_path(path: list[str], stdlib: list[str], runtime: list[str]) -> list[str]:
    """``path`` (a ``sys.path``) with only the standard library's entries kept, in
    order, then ``runtime``. Standard-library entries are those within ``stdlib``
    directories (or the stdlib zip) that are no site directory."""
    roots = [os.path.normpath(d) for d in stdlib]

    def is_stdlib(entry: str) -> bool:
        norm = os.path.normpath(entry)
        if any(part in ("site-packages", "dist-packages") for part in norm.split(os.sep)):
            return False
        return norm.endswith(".zip") or any(
            norm == r or norm.startswith(r + os.sep) for r in roots)

    kept = [e for e in path if e and is_stdlib(e)]
    return kept + [r for r in runtime if r not in kept]


def _runtime_dirs() -> list[str]:
    """A sys.path entry that holds Skiff's package and nothing else importable, if
    the install has one (a src layout: the editable checkout's ``src``, which the
    sandbox shows with ``skiff`` alone). Otherwise none: ``skiff`` and ``msgspec``
    are imported already, and their submodules load through the packages' own
    ``__path__``, not ``sys.path``."""
    import skiff

    parent = os.path.dirname(os.path.dirname(os.path.realpath(skiff.__file__)))
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    others = [n for n in names if n not in ("skiff", "__pycache__")
              and not n.endswith((".egg-info", ".dist-info"))]
    return [] if others else [parent]


def _isolate() -> None:
    """On the platform's interpreter: drop its site-packages from sys.path (a
    dependency environment's sys.path is isolated as built)."""
    if os.path.exists(os.path.join(sysconfig.get_path("purelib"), ISOLATED_MARKER)):
        return
    stdlib = [sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")]
    sys.path[:] = isolated_path(sys.path, stdlib, _runtime_dirs())
    # and what site-packages left behind at startup (the .pth files' imports, such as
    # setuptools' distutils shim, and its import hook)
    kept = [os.path.realpath(e) for e in sys.path]

    def dropped(module: object) -> bool:
        file = getattr(module, "__file__", None)
        return bool(file) and not any(os.path.realpath(file).startswith(e + os.sep)
                                      for e in kept)

    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] not in RUNTIME_PACKAGES and dropped(module):
            del sys.modules[name]
    # an import hook whose module went with them goes too (meta_path holds the
    # interpreter's finder classes and hooks' instances: both name their module)
    sys.meta_path[:] = [f for f in sys.meta_path
                        if getattr(f, "__module__", None) in (None, *sys.modules)]
    importlib.invalidate_caches()


def _preinit(load_json: str) -> str:
    """Run a pre-initialized app's init here, once; '' or the failure's summary."""
    import traceback

    import msgspec

    from skiff import ipc as protocol
    from skiff.instance import worker

    try:
        worker.preinit(msgspec.json.decode(load_json.encode(), type=protocol.Load))
    except BaseException as exc:  # noqa: BLE001 - reported to the gateway
        summary = getattr(exc, "traceback_summary", "") or "".join(
            traceback.format_exception(exc)[-4:])
        return f"{exc}\n{summary}"
    return ""


def _child(fd: int, msg: control.Fork, ctl: socket.socket, sel: selectors.BaseSelector,
           wake_r: int, wake_w: int) -> None:
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
        for procs in msg.cgroup_procs:  # before anything else, so children are born inside
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        if msg.namespaces:
            _namespaced(fd, msg.network)
        from skiff.instance import worker

        worker.serve(socket.socket(fileno=fd))
    except BaseException as exc:  # noqa: BLE001 - never fall back into the zygote loop
        print(f"skiff instance {os.getpid()}: {exc!r}", file=sys.stderr)
        code = 1
    os._exit(code)


def _namespaced(fd: int, network: bool) -> None:
    """Become the keeper of a new pid (and network) namespace: the instance is our
    child, pid 1 inside; we only wait for it and pass its fate on to the zygote."""
    from skiff.instance import sandbox

    sandbox.enter_namespaces(network)
    pid = os.fork()
    if pid == 0:
        control.die_with_parent()
        if network:
            sandbox.loopback_up()
        sandbox.prepare_root()  # the part of the minimal root every app shares, ahead of bind
        return
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


def _sandbox_zygote() -> None:
    """An app zygote runs app code at init, so it is sandboxed before that code runs
    (its instances inherit every layer)."""
    import msgspec

    from skiff.instance import sandbox, worker

    raw = os.environ.get("SKIFF_SANDBOX")
    if not raw:
        return
    plan = msgspec.json.decode(raw.encode(), type=sandbox.Plan)
    if os.environ.get("SKIFF_SANDBOX_NETWORK") == "1":
        sandbox.unshare(sandbox.CLONE_NEWNET)
        sandbox.loopback_up()
    sandbox.apply(plan)
    worker.mark_sandboxed()


def _join_cgroup() -> None:
    """An app zygote joins the app's cgroup before it runs anything else (its
    init is app code, and the app's limits must hold while it runs)."""
    for procs in filter(None, os.environ.pop("SKIFF_CGROUP_PROCS", "").split(",")):
        with open(procs, "w") as f:
            f.write(str(os.getpid()))


def main(fd: int) -> None:
    control.die_with_parent()
    _join_cgroup()
    ctl = socket.socket(fileno=fd)
    extra = [m for m in os.environ.get("SKIFF_PRELOAD", "").split(",") if m]
    _preload(PRELOAD)
    _isolate()  # after the runtime is in, before anything of the app's environment
    _preload(extra)
    error = ""
    preinit = os.environ.get("SKIFF_PREINIT")
    if preinit:
        try:
            _sandbox_zygote()
        except OSError as exc:
            error = f"the sandbox could not be applied: {exc}\n"
        else:
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
            try:
                pid = os.fork()
            except OSError:  # e.g. an app zygote at its pids limit: this fork fails, not us
                pid = -1
            if pid == 0:
                _child(fds[0], msg, ctl, sel, wake_r, wake_w)
            for extra_fd in fds:
                os.close(extra_fd)
            if pid > 0:
                children.add(pid)
            ctl.send(control.encode(control.Forked(token=msg.token, pid=max(pid, 0))))


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
