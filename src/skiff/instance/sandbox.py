"""The instance sandbox, applied inside the forked instance before any app code.

Layers, each optional so ``skiff doctor`` can say which are in force:

- namespaces: pid (cannot see or signal other processes), network (loopback
  only; the egress proxy is the one way out), mount: a minimal root of its own
  (a tmpfs, then pivot_root) holding only the interpreter and its prefixes, the
  system libraries, skiff's package, a small /etc, six device nodes, its code
  and environment read-only, its data directory (if any) read-write, private
  size-limited /tmp (= /var/tmp) and /dev/shm, and a fresh /proc. The rest of
  the host, the platform's state and other apps' code and data do not exist for
  it;
- its own unprivileged uid/gid per app, no capabilities, no_new_privs;
- a seccomp filter refusing what no micro app needs.

The root is made in two parts: what every app shares is staged by the
pre-forked spare while it waits (``prepare_root``, off the request path); at
bind the app's part is added and the instance pivots into it (bench.layers
measures both). An app zygote, which runs app code at init, builds it whole.

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
import sys
import threading
from collections.abc import Iterable

import msgspec

from skiff.ipc import Plan

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
PROXY_PORT_ENV = "SKIFF_EGRESS_PORT"


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
# The host's system directories an interpreter needs (on merged-/usr systems
# all but /usr are links into it; the root recreates the links).
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
DEFAULT_TMP_MB = 64  # the manifest's default tmpMB: what a spare's stage is made with
APP_USER = "app"  # the name passwd gives the app's uid (getpass, ssh-style tools want one)
# the root itself holds only mount points and the generated /etc files
_ROOT_TMPFS = "mode=755,size=1m,nr_inodes=4096"
_BIND_FLAGS = {"ro": MS_RDONLY | MS_NOSUID | MS_NODEV, "rw": MS_NOSUID | MS_NODEV,
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
    """passwd and group, naming only root, the app and nobody."""
    return {
        "passwd": (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                   f"{APP_USER}:x:{uid}:{gid}:skiff app:/tmp:/usr/sbin/nologin\n"
                   "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        "group": f"root:x:0:\n{APP_USER}:x:{gid}:\nnogroup:x:65534:\n",
    }


_STATIC_ETC = {
    "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "nsswitch.conf": ("passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
                      "networks: files\nprotocols: files\nservices: files\n"),
}


def _covered(path: str, by: list[str]) -> bool:
    return any(path == b or path.startswith(b.rstrip("/") + "/") for b in by)


def _host_facts() -> tuple[list[tuple[str, str, bool]], list[tuple[str, int]]]:
    """What of the host's /etc and /dev exists, read once per process (the zygote's
    import; its forks inherit it): resolving links costs ~50 lstat calls, too many
    for every cold start. /etc: (path, real path, is a link); /dev: (name, rdev)."""
    etc = [(f"/etc/{n}", os.path.realpath(f"/etc/{n}"), os.path.islink(f"/etc/{n}"))
           for n in ETC_FROM_HOST if os.path.exists(f"/etc/{n}")]
    devices = []
    for name in DEVICES:
        with contextlib.suppress(OSError):
            st = os.stat(f"/dev/{name}")
            if stat.S_ISCHR(st.st_mode):
                devices.append((name, st.st_rdev))
    return etc, devices


_HOST_ETC, _HOST_DEVICES = _host_facts()


Entry = tuple[str, str, object]  # (path inside the root, kind, argument)


# The host's /tmp, opened before the stage covers it: sources below it (a
# $SKIFF_HOME in /tmp) are opened relative to it. Closed before the app runs.
_host_tmp: int | None = None


def _host(path: str) -> tuple[str, int | None]:
    """``path`` as (path, dir_fd) that reaches the host's file even under the stage."""
    if _host_tmp is not None and path.startswith(_STAGE + "/"):
        return path[len(_STAGE) + 1:], _host_tmp
    return path, None


def _lstat(path: str) -> os.stat_result | None:
    rel, fd = _host(path)
    try:
        return os.lstat(rel, dir_fd=fd)
    except OSError:
        return None


def _source(path: str) -> int:
    rel, fd = _host(path)
    return os.open(rel, os.O_PATH | os.O_CLOEXEC, dir_fd=fd)


# path -> (real path or "", link text or ""): a spare resolves the shared paths
# when it stages them, so at bind only the app's own are looked up
_resolved: dict[str, tuple[str, str]] = {}


def _resolve_one(path: str) -> tuple[str, str]:
    known = _resolved.get(path)
    if known is not None:
        return known
    st = _lstat(path)
    if st is None:
        found = ("", "")
    elif stat.S_ISLNK(st.st_mode):
        rel, fd = _host(path)
        target = os.path.realpath(path)
        found = (target if _lstat(target) is not None else "", os.readlink(rel, dir_fd=fd))
    else:
        found = (path, "")
    _resolved[path] = found
    return found


def _resolve(paths: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Bind paths as real directories (shortest first) and links (/lib -> usr/lib:
    the root gets the link, and what it points to is bound)."""
    real, links = set(), []
    for path in {os.path.normpath(p) for p in paths}:
        target, link = _resolve_one(path)
        if link:
            links.append((path, link))
        if target:
            real.add(target)
    return sorted(real, key=len), sorted(links)


def _binds(paths: Iterable[str], kind: str, ro: list[str]) -> list[Entry]:
    """Entries binding ``paths``; read-only ones already covered by ``ro`` are
    left out, and ``ro`` grows by the new ones."""
    real, links = _resolve(paths)
    entries: list[Entry] = [(path, "symlink", target) for path, target in links]
    for path in real:
        if kind == "ro":
            if _covered(path, ro):
                continue
            ro.append(path)
        entries.append((path, kind, _source(path)))
    return entries


def _shared_entries(binds: Iterable[str], tmp_mb: int, ro: list[str]) -> list[Entry]:
    """The part of the root every app has: system and interpreter directories,
    /etc, /dev, /tmp (= /var/tmp), /dev/shm and /proc."""
    entries = _binds(binds, "ro", ro)
    for host, real, is_link in _HOST_ETC:
        if _covered(host, ro):  # e.g. $SSL_CERT_DIR bound already
            continue
        if is_link and _covered(real, ro):  # keep the zone name readable
            entries.append((host, "symlink", real))
        else:
            entries.append((host, "ro", _source(real)))
    for name, text in _STATIC_ETC.items():
        entries.append((f"/etc/{name}", "file", text))
    entries.append(("/dev", "devtmpfs", "mode=755,size=64k"))
    for name, rdev in _HOST_DEVICES:
        entries.append((f"/dev/{name}", "device", rdev))
    for name, target in _DEV_LINKS.items():
        entries.append((f"/dev/{name}", "symlink", target))
    entries.append(("/dev/shm", "tmpfs", f"mode=1777,size={tmp_mb}m"))
    # one budget for both: /var/tmp is the private /tmp again
    entries.append(("/tmp", "tmpfs", f"mode=1777,size={tmp_mb}m"))
    entries.append(("/var/tmp", "alias", "/tmp"))
    # a /proc of our own pid namespace; hidepid hides other users' processes too
    entries.append(("/proc", "proc", "hidepid=2"))
    return entries


def _app_entries(plan: Plan, ro: list[str]) -> list[Entry]:
    """What one app adds: its code, environment and data, its passwd, the
    egress socket, and covers over the platform's state."""
    entries = (_binds(plan.binds, "ro", ro) + _binds(plan.writable, "rw", [])
               + _data_dir_entries(plan))
    shown = ro + [p for p, kind, _a in entries if kind in ("rw", "volume")]
    for path in plan.hide:  # under a bind: covered by an empty tmpfs
        st = _lstat(path)
        if _covered(path, shown) and st is not None and stat.S_ISDIR(st.st_mode):
            entries.append((path, "tmpfs", "mode=755,size=4k"))
    for name, text in _etc_files(plan.uid, plan.gid).items():
        entries.append((f"/etc/{name}", "file", text))
    if plan.egress_socket and _lstat(plan.egress_socket) is not None:
        entries.append((plan.egress_socket, "socket", _source(plan.egress_socket)))
    return entries


def _data_dir_entries(plan: Plan) -> list[Entry]:
    """The app's persistent data directory, the one writable place that outlives an
    instance. A quota'd volume (an ext4 image on a loop device the platform attached)
    is mounted here by its device rather than bound from the host's mount: a spare
    made before the volume existed has a copy of the host's mounts without it, while
    /dev (devtmpfs) shows the device to every namespace, and the kernel gives a second
    mount of a device the same file system (one superblock, so instances share it
    safely). Without a volume (not root) the directory is bound as it is."""
    if not plan.data_dir:
        return []
    if plan.data_device:
        return [(plan.data_dir, "volume", plan.data_device)]
    return _binds([plan.data_dir], "rw", [])


def _make_point(dest: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(dest, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not os.path.lexists(dest):
            os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _build(entries: list[Entry]) -> None:
    """Make ``entries`` under the stage, parents before children (/tmp's tmpfs
    before a code directory below it). Closes every source it was given."""
    entries = sorted(entries, key=lambda e: e[0].split("/"))
    unclosed = {int(a) for _p, k, a in entries if k in _BIND_FLAGS}  # type: ignore[call-overload]
    old_umask = os.umask(0o022)  # mount points and /etc files: root's, not writable
    try:
        for path, kind, arg in entries:
            dest = _STAGE + path
            if kind == "symlink":
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                if not os.path.lexists(dest):  # an app's binds repeat the shared links
                    os.symlink(str(arg), dest)
            elif kind == "file":
                _make_point(dest, False)
                with open(dest, "w") as f:
                    f.write(str(arg))
            elif kind in ("tmpfs", "devtmpfs", "proc"):
                os.makedirs(dest, exist_ok=True)
                # /dev holds device nodes (only the ones made here: the app has no
                # CAP_MKNOD), so not nodev; nothing there, in /dev/shm or /proc runs
                flags = (MS_NOSUID | MS_NOEXEC if kind == "devtmpfs" else
                         MS_NOSUID | MS_NODEV | (MS_NOEXEC if path in ("/dev/shm", "/proc")
                                                 else 0))
                _mount(kind if kind == "proc" else "tmpfs", dest,
                       kind if kind == "proc" else "tmpfs", flags, str(arg))
            elif kind == "device":
                # mknod, not a bind: 1 syscall instead of 2 mounts (measured in bench.layers)
                os.mknod(dest, stat.S_IFCHR | 0o666, int(arg))  # type: ignore[call-overload]
                os.chmod(dest, 0o666)  # the umask took write from group and others
            elif kind == "volume":
                os.makedirs(dest, exist_ok=True)
                _mount(str(arg), dest, "ext4", MS_NOSUID | MS_NODEV)
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


class _Staged(msgspec.Struct):
    ro: list[str]  # host paths bound read-only in the stage
    tmp_mb: int


_staged: _Staged | None = None  # this process staged the shared part of its root


def _stage(binds: Iterable[str], tmp_mb: int) -> _Staged:
    global _host_tmp
    unshare(CLONE_NEWNS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we do leaks to the host
    ro: list[str] = []
    entries = _shared_entries(binds, tmp_mb, ro)
    try:
        host_tmp = os.open(_STAGE, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _mount("tmpfs", _STAGE, "tmpfs", MS_NOSUID | MS_NODEV, _ROOT_TMPFS)
        except OSError:
            os.close(host_tmp)
            raise
    except OSError:
        for _p, kind, arg in entries:
            if kind in _BIND_FLAGS:
                os.close(int(arg))  # type: ignore[call-overload]
        raise
    _host_tmp = host_tmp
    _build(entries)
    return _Staged(ro=ro, tmp_mb=tmp_mb)


def _close_host_tmp() -> None:
    global _host_tmp
    if _host_tmp is not None:
        os.close(_host_tmp)
        _host_tmp = None


def own_binds() -> set[str]:
    """What this process's interpreter needs: the system directories, its prefix
    and base prefix (as named and resolved) and skiff's package directory."""
    import skiff

    binds = {*SYSTEM_PATHS, *interpreter_prefixes(sys.executable), sys.prefix, sys.base_prefix,
             os.path.dirname(os.path.realpath(skiff.__file__))}
    binds.update(os.environ[v] for v in ("SSL_CERT_FILE", "SSL_CERT_DIR") if os.environ.get(v))
    return binds


def interpreter_prefixes(python: str) -> list[str]:
    """An interpreter's install prefix, as named and as resolved (a venv's
    bin/python links to its base interpreter)."""
    named = os.path.dirname(os.path.dirname(python))
    return [named, os.path.dirname(os.path.dirname(os.path.realpath(python)))]


def prepare_root() -> None:
    """In a spare instance (no app yet, pid 1 of its own namespaces): stage the
    part of the minimal root every app shares, off the request path; ``apply``
    then adds the app's part and enters it. Best effort: on failure ``apply``
    builds the whole root itself."""
    global _staged
    try:
        _staged = _stage(own_binds(), DEFAULT_TMP_MB)
    except OSError:
        _close_host_tmp()
        with contextlib.suppress(OSError):
            _check(_libc.umount2(_STAGE.encode(), MNT_DETACH), "umount the stage")


def _drop_stage() -> None:
    global _staged
    _close_host_tmp()
    if _staged is not None:
        _check(_libc.umount2(_STAGE.encode(), MNT_DETACH), "umount the stage")
        _staged = None


def _mount_namespace(plan: Plan) -> None:
    """A root of the instance's own, as bubblewrap and nsjail make one: a tmpfs,
    the few host paths the plan names bound into it, then pivot_root into it, so
    nothing else of the host exists for the app (no /home, /opt, /var/lib, no
    world-writable /var/tmp or /run/lock shared with other apps)."""
    global _staged
    if _staged is not None:  # a stage made ahead must show nothing this plan does not
        allowed = _resolve(plan.binds)[0]
        if not all(_covered(p, allowed) for p in _staged.ro):
            _drop_stage()
    staged = _staged or _stage(plan.binds, plan.tmp_mb)
    _staged = None
    try:
        _build(_app_entries(plan, list(staged.ro)))
    finally:
        _close_host_tmp()  # a way back to the host's /tmp: never in the app's hands
    if plan.tmp_mb != staged.tmp_mb:
        for path, noexec in (("/tmp", 0), ("/dev/shm", MS_NOEXEC)):
            _mount(None, _STAGE + path, None, MS_REMOUNT | MS_NOSUID | MS_NODEV | noexec,
                   f"size={plan.tmp_mb}m")
    os.chdir(_STAGE)
    # pivot_root(".", "."): the old root ends up stacked on the new one, then detached
    _check(_libc.syscall(_SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount the host root")
    os.chdir("/")
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def apply(plan: Plan) -> None:
    """Apply every layer of ``plan`` to this process. Raises OSError on failure:
    an instance that cannot be sandboxed as asked does not run."""
    if plan.mount_ns:
        _mount_namespace(plan)
    else:
        _drop_stage()
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
