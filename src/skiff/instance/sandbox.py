"""The instance sandbox, applied inside the forked instance before any app code.

Layers, each optional so ``skiff doctor`` can say which are in force:

- namespaces: pid (cannot see or signal other processes), network (loopback
  only; the egress proxy is the one way out), mount: a minimal root of its own
  (a tmpfs, then pivot_root) holding only the interpreter and its prefixes, the
  system libraries, skiff's package, a small /etc, six device nodes, its code
  and environment read-only, private size-limited /tmp (= /var/tmp) and
  /dev/shm, and a fresh /proc. The rest of the host, the platform's state and
  other apps' code do not exist for it;
- its own unprivileged uid/gid per app, no capabilities, no_new_privs;
- a seccomp filter refusing what no micro app needs.

Python 3.11 has no ``os.unshare``/``mount``, so they are called through libc.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import platform
import socket
import stat
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
    mount_ns: bool = False  # a minimal root of its own (mount namespace + pivot_root)
    binds: tuple[str, ...] = ()  # host paths visible read-only, at the same path
    writable: tuple[str, ...] = ()  # host paths visible read-write (an app's data dir)
    hide: tuple[str, ...] = ()  # covered by an empty tmpfs should a bind contain them
    tmp_mb: int = 64
    seccomp: bool = False
    egress_socket: str = ""  # unix socket of this app's egress proxy


_libc = ctypes.CDLL(None, use_errno=True)
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine(), -1)
MNT_DETACH = 2

# The new root is staged over /tmp: any directory would do, as the mount is seen
# only in this process's own namespace; every source is opened before it is covered.
_STAGE = "/tmp"
# Of the host's /etc, what Python, OpenSSL and glibc read (the loader cache, time
# zone, DNS, service names, CA certificates); nothing that names the host's users.
ETC_FROM_HOST = ("ld.so.cache", "localtime", "resolv.conf", "services", "protocols",
                 "mime.types", "ssl/openssl.cnf", "ssl/certs")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
              "stderr": "/proc/self/fd/2"}
APP_USER = "app"  # the name passwd gives the app's uid (getpass, ssh-style tools want one)
# the root itself holds only mount points and the generated /etc files
_ROOT_TMPFS = "mode=755,size=1m,nr_inodes=4096"
_BIND_FLAGS = {"ro": MS_RDONLY | MS_NOSUID | MS_NODEV, "rw": MS_NOSUID | MS_NODEV,
               "dev": MS_NOSUID | MS_NOEXEC,  # device nodes: nodev would make them useless
               "socket": MS_NOSUID | MS_NODEV}


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


def _etc_files(uid: int, gid: int) -> dict[str, str]:
    """The /etc files written for the instance, naming only root, the app and nobody."""
    return {
        "passwd": (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                   f"{APP_USER}:x:{uid}:{gid}:skiff app:/tmp:/usr/sbin/nologin\n"
                   "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        "group": f"root:x:0:\n{APP_USER}:x:{gid}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        "nsswitch.conf": ("passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
                          "networks: files\nprotocols: files\nservices: files\n"),
    }


def _covered(path: str, by: list[str]) -> bool:
    return any(path == b or path.startswith(b.rstrip("/") + "/") for b in by)


def _root_entries(plan: Plan) -> list[tuple[str, str, object]]:
    """Everything the minimal root holds, as (path inside, kind, argument).
    Sources are opened (O_PATH) here, before anything covers them."""
    entries: list[tuple[str, str, object]] = []
    ro: list[str] = []

    def source(path: str) -> int:
        return os.open(path, os.O_PATH | os.O_CLOEXEC)

    def bind(path: str, kind: str) -> None:
        if kind == "ro":
            if _covered(path, ro):
                return
            ro.append(path)
        entries.append((path, kind, source(path)))

    links = []
    for kind, paths in (("ro", plan.binds), ("rw", plan.writable)):
        for path in sorted({os.path.normpath(p) for p in paths}, key=len):
            if os.path.islink(path):
                links.append((path, kind))
            elif os.path.exists(path):
                bind(path, kind)
    for path, kind in links:  # /lib -> usr/lib: the link, and what it points to
        entries.append((path, "symlink", os.readlink(path)))
        real = os.path.realpath(path)
        if os.path.exists(real):
            bind(real, kind)
    for path in plan.hide:  # under a bind: covered by an empty tmpfs
        if _covered(path, [p for p, k, _a in entries if k in ("ro", "rw")]) \
                and os.path.isdir(path):
            entries.append((path, "tmpfs", "mode=755,size=4k"))
    for name in ETC_FROM_HOST:
        host = f"/etc/{name}"
        if not os.path.exists(host) or _covered(host, ro):  # e.g. $SSL_CERT_DIR bound already
            continue
        real = os.path.realpath(host)
        if os.path.islink(host) and _covered(real, ro):  # keep the zone name readable
            entries.append((host, "symlink", real))
        else:
            entries.append((host, "ro", source(real)))
    for name, text in _etc_files(plan.uid, plan.gid).items():
        entries.append((f"/etc/{name}", "file", text))
    entries.append(("/dev", "tmpfs", "mode=755,size=64k"))
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            entries.append((f"/dev/{name}", "dev", source(f"/dev/{name}")))
    for name, target in _DEV_LINKS.items():
        entries.append((f"/dev/{name}", "symlink", target))
    entries.append(("/dev/shm", "tmpfs", f"mode=1777,size={plan.tmp_mb}m"))
    # one budget for both: /var/tmp is the private /tmp again
    entries.append(("/tmp", "tmpfs", f"mode=1777,size={plan.tmp_mb}m"))
    entries.append(("/var/tmp", "alias", "/tmp"))
    entries.append(("/proc", "dir", None))
    if plan.egress_socket and os.path.exists(plan.egress_socket):
        entries.append((plan.egress_socket, "socket", source(plan.egress_socket)))
    # parents before children: /tmp's tmpfs before the code dir that may lie under it
    entries.sort(key=lambda e: os.path.normpath(e[0]).split("/"))
    return entries


def _make_point(dest: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(dest, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not os.path.lexists(dest):
            os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _mount_namespace(plan: Plan) -> None:
    """A root of the instance's own, as bubblewrap and nsjail make one: a tmpfs,
    the few host paths the plan names bound into it, then pivot_root into it, so
    nothing else of the host exists for the app (no /home, /opt, /var/lib, no
    world-writable /var/tmp or /run/lock shared with other apps)."""
    unshare(CLONE_NEWNS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we do leaks to the host
    entries = _root_entries(plan)
    unclosed = {int(a) for _p, k, a in entries if k in _BIND_FLAGS}  # type: ignore[call-overload]
    old_umask = os.umask(0o022)  # mount points and /etc files: root's, not writable
    try:
        _mount("tmpfs", _STAGE, "tmpfs", MS_NOSUID | MS_NODEV, _ROOT_TMPFS)
        for path, kind, arg in entries:
            dest = _STAGE + path
            if kind == "symlink":
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.symlink(str(arg), dest)
            elif kind == "file":
                _make_point(dest, False)
                with open(dest, "w") as f:
                    f.write(str(arg))
            elif kind == "dir":
                os.makedirs(dest, exist_ok=True)
            elif kind == "tmpfs":
                os.makedirs(dest, exist_ok=True)
                noexec = MS_NOEXEC if path == "/dev/shm" else 0
                _mount("tmpfs", dest, "tmpfs", MS_NOSUID | MS_NODEV | noexec, str(arg))
            elif kind == "alias":
                os.makedirs(dest, exist_ok=True)
                _mount(_STAGE + str(arg), dest, None, MS_BIND)
            else:  # a bind of an opened host path
                fd = int(arg)  # type: ignore[call-overload]
                try:
                    _make_point(dest, stat.S_ISDIR(os.fstat(fd).st_mode))
                    _mount(f"/proc/self/fd/{fd}", dest, None, MS_BIND | MS_REC)
                finally:
                    os.close(fd)
                    unclosed.discard(fd)
                _mount(None, dest, None, MS_BIND | MS_REMOUNT | _BIND_FLAGS[kind])
    finally:
        os.umask(old_umask)
        for fd in unclosed:  # only on failure: every bind closes its own
            os.close(fd)
    os.chdir(_STAGE)
    # pivot_root(".", "."): the old root ends up stacked on the new one, then detached
    _check(_libc.syscall(_SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount the host root")
    os.chdir("/")
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
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
