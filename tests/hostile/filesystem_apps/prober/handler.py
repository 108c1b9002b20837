"""Looks around the filesystem it was given and reports what it sees; the test
decides what it should not have seen."""

import os
import pwd
import ssl
import stat


def _try(fn):
    try:
        return {"ok": True, "result": fn()}
    except BaseException as exc:  # noqa: BLE001 - the refusal is the result
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _read(path):
    with open(path, "rb") as f:
        return f.read(200).decode("latin-1")


def _write(path, data):
    with open(path, "w") as f:
        f.write(data)
    return data


def _certs():
    ctx = ssl.create_default_context()
    paths = ssl.get_default_verify_paths()
    with open(paths.cafile or "/etc/ssl/certs/ca-certificates.crt", "rb") as f:
        head = f.read(100)
    return {"x509_ca": ctx.cert_store_stats()["x509_ca"], "pem": b"BEGIN CERTIFICATE" in head}


def _dir_fds():
    """Open descriptors that are directories: a way out of the root if one was left."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISDIR(os.fstat(int(fd)).st_mode):
                found.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return found


def handler(event, context):
    q = event.get("queryStringParameters") or {}
    path = q.get("path", "/")
    probes = {
        "/ls": lambda: sorted(os.listdir(path)),
        "/read": lambda: _read(path),
        "/write": lambda: _write(path, q.get("data", "")),
        "/exists": lambda: os.path.lexists(path),
        "/user": lambda: {"uid": os.getuid(), "name": pwd.getpwuid(os.getuid()).pw_name},
        "/certs": _certs,
        "/dir-fds": _dir_fds,
    }
    probe = probes.get(event["rawPath"])
    if probe is None:
        return {"statusCode": 404, "body": "no such probe"}
    return _try(probe)
