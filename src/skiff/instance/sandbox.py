"""The instance sandbox, applied inside the forked instance before any app code.

Layers, each optional so ``skiff doctor`` can say which are in force:

- namespaces: pid (cannot see or signal other processes), network (loopback
  only; the egress proxy is the one way out), mount (the app sees its code
  read-only, a private size-limited /tmp and /proc, and none of the
  platform's state: $SKIFF_HOME and /root are covered; /etc/shadow is unreadable to its uid);
- its own unprivileged uid/gid per app, no capabilities, no_new_privs;
- a seccomp filter refusing what no micro app needs.

Python 3.11 has no ``os.unshare``/``mount``, so they are called through libc.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import threading

import msgspec

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
PROXY_PORT_ENV = "SKIFF_EGRESS_PORT"


class Plan(msgspec.Struct, frozen=True):
    """What to apply, decided by the platform (it knows the paths and the level)."""

    uid: int = 0
    gid: int = 0
    drop_privileges: bool = False
    mount_ns: bool = False
    hide: tuple[str, ...] = ()  # directories covered by an empty tmpfs
    keep: tuple[str, ...] = ()  # paths under a hidden one that stay visible, read-only
    tmp_mb: int = 64
    seccomp: bool = False
    egress_socket: str = ""  # unix socket of this app's egress proxy


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(),
                       fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {target}")


def loopback_up() -> None:
    """A new network namespace starts with lo down; bring it up (SIOCSIFFLAGS)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, siocgifflags, ifreq))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


def enter_namespaces(network: bool) -> None:
    """Called before the fork that makes the instance (pid 1 of its namespace)."""
    unshare(CLONE_NEWPID | (CLONE_NEWNET if network else 0))


def _mount_namespace(plan: Plan) -> None:
    unshare(CLONE_NEWNS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we do leaks to the host
    # open what must stay visible before covering its parents
    keep = []
    for path in sorted(set(plan.keep), key=len):
        if os.path.exists(path):
            keep.append((path, os.open(path, os.O_PATH | os.O_CLOEXEC), os.path.isdir(path)))
    egress = None
    if plan.egress_socket and os.path.exists(plan.egress_socket):
        egress = os.open(plan.egress_socket, os.O_PATH | os.O_CLOEXEC)
    # /tmp first: a hidden or kept path may lie below it (a $SKIFF_HOME in /tmp)
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={plan.tmp_mb}m")
    for path in plan.hide:
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m")
    for path, fd, is_dir in keep:
        if is_dir:
            os.makedirs(path, exist_ok=True)
        elif not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "w").close()
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    if egress is not None:
        os.makedirs(os.path.dirname(plan.egress_socket), exist_ok=True)
        open(plan.egress_socket, "w").close()
        _mount(f"/proc/self/fd/{egress}", plan.egress_socket, None, MS_BIND)
        os.close(egress)
    if os.path.isdir("/dev/shm"):
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
               f"mode=1777,size={plan.tmp_mb}m")
    # a /proc of our own pid namespace; hidepid hides other users' processes too
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")


def apply(plan: Plan) -> None:
    """Apply every layer of ``plan`` to this process. Raises OSError on failure:
    an instance that cannot be sandboxed as asked does not run."""
    if plan.mount_ns:
        _mount_namespace(plan)
    if plan.drop_privileges:
        parent = os.getppid()
        os.setgroups([])
        os.setresgid(plan.gid, plan.gid, plan.gid)
        os.setresuid(plan.uid, plan.uid, plan.uid)  # clears every capability
        # ...and the parent-death signal: arm it again, or a killed instance's
        # process would outlive its keeper
        from skiff.instance.control import die_with_parent

        die_with_parent()
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)
        os.environ["HOME"] = "/tmp"
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if plan.seccomp:
        from skiff.instance.seccomp import install

        install()


def start_egress_relay(unix_path: str) -> int:
    """Inside a network namespace: listen on 127.0.0.1 and relay each connection to
    the app's egress proxy (a unix socket reachable through the mount namespace).
    Sets HTTP_PROXY/HTTPS_PROXY; returns the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    proxy = f"http://127.0.0.1:{port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ[name] = proxy
    os.environ[PROXY_PORT_ENV] = str(port)

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def accept_loop() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(unix_path)
            except OSError:
                client.close()
                upstream.close()
                continue
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    threading.Thread(target=accept_loop, name="skiff-egress-relay", daemon=True).start()
    return port
