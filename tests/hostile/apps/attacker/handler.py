"""A hostile app: each path tries one thing a micro app must not be able to do,
and reports what happened. The platform must refuse, or kill the instance."""

import ctypes
import os
import signal
import socket
import time
import urllib.request


def _try(fn):
    try:
        result = fn()
    except BaseException as exc:  # noqa: BLE001 - the refusal is the result
        return {"blocked": True, "error": f"{type(exc).__name__}: {exc}"}
    return {"blocked": False, "result": repr(result)[:200]}


def _read(path):
    with open(path, "rb") as f:
        return f.read(100)


def _write(path):
    with open(path, "w") as f:
        f.write("pwned")


def _fill_tmp():
    chunk = b"x" * (1 << 20)
    with open("/tmp/fill", "wb") as f:
        for _ in range(100_000):
            f.write(chunk)
            f.flush()


def _fork_bomb():
    children = []
    try:
        for _ in range(10_000):
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _libc_call(name, *args):
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _connect(host, port):
    with socket.create_connection((host, int(port)), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return s.recv(100)


def _fetch(url):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read(100)


def handler(event, context):
    path = event["rawPath"]
    q = event.get("queryStringParameters") or {}
    attacks = {
        "/read": lambda: _read(q["path"]),
        "/write": lambda: _write(q["path"]),
        "/fill-tmp": _fill_tmp,
        "/fork-bomb": _fork_bomb,
        "/kill": lambda: os.kill(int(q["pid"]), signal.SIGKILL),
        "/ptrace": lambda: _libc_call("ptrace", 16, int(q["pid"]), 0, 0),  # PTRACE_ATTACH
        "/mount": lambda: _libc_call("mount", b"none", b"/mnt", b"tmpfs", 0, None),
        "/unshare": lambda: _libc_call("unshare", 0x10000000),  # CLONE_NEWUSER
        "/raw-socket": lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
        "/connect": lambda: _connect(q["host"], q["port"]),
        "/fetch": lambda: _fetch(q["url"]),
        "/setuid": lambda: os.setuid(0),
        "/processes": lambda: sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    }
    if path == "/spin":
        while True:
            pass
    if path == "/sleep":
        time.sleep(3600)
    if path == "/hog":
        hoard = []
        while True:
            hoard.append(bytearray(32 << 20))
    if path == "/shout":  # floods its output
        for i in range(20_000):
            print(f"spam {i}")
        return {"printed": 20_000}
    if path == "/flood":  # a response far bigger than the gateway takes
        return {"statusCode": 200, "body": "x" * (20 << 20)}
    if path == "/whoami":
        return {"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(),
                "proxy": os.environ.get("HTTP_PROXY"), "tmp": os.listdir("/tmp"),
                "env": sorted(os.environ)}
    attack = attacks.get(path)
    if attack is None:
        return {"statusCode": 404, "body": "no such attack"}
    return _try(attack)
