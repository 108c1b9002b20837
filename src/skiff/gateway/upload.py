"""Deploy uploads: a .tar.gz of an app directory, unpacked within limits.

Threat model: whoever holds an admin token (or steals one) sends the archive,
and it is read by the gateway process. A 1 MB gzip can expand to gigabytes,
hold a million empty files, or carry links and devices that point out of the
app; each is refused before it is written out in full. The caps count what the
archive expands to (decompressed bytes read, file sizes, member count), so a
lying header or a huge pax record stops at the cap too. The work is blocking
(decompression, disk writes): callers run it in a thread, off the event loop.

Upload directories live under ``$SKIFF_HOME/uploads`` named ``<pid>-...`` so
that the ones a crashed server left behind are provably stale at the next start.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO

from skiff.errors import PayloadTooLarge, SkiffError

MAX_MANIFEST = 1024 * 1024  # skiff.yaml is parsed on deploy: a few KiB in practice
# tar's own records (512-byte headers, padding) on top of the files' bytes
_TAR_OVERHEAD_PER_MEMBER = 2 * 512


class _Capped:
    """A read-only stream that raises once more than ``limit`` bytes were read."""

    def __init__(self, inner: BinaryIO, limit: int, message: str) -> None:
        self.inner, self.limit, self.count, self.message = inner, limit, 0, message

    def read(self, n: int = -1) -> bytes:
        room = self.limit - self.count + 1
        data = self.inner.read(room if n is None or n < 0 else min(n, room))
        self.count += len(data)
        if self.count > self.limit:
            raise PayloadTooLarge(self.message, code="app_too_large")
        return data


def extract(archive: Path, dest: Path, *, max_bytes: int, max_files: int) -> None:
    """Unpack the .tar.gz (or plain .tar) ``archive`` into ``dest``: regular files and
    directories only, at most ``max_files`` members and ``max_bytes`` of files."""
    too_big = (f"the app expands to more than {max_bytes} bytes or {max_files} files "
               "(SKIFF_MAX_APP_BYTES, SKIFF_MAX_APP_FILES); leave data and dependencies "
               "out of the app directory")
    try:
        with open(archive, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream: BinaryIO = gzip.GzipFile(fileobj=raw) if gzipped else raw  # type: ignore[assignment]
            capped = _Capped(stream, max_bytes + _TAR_OVERHEAD_PER_MEMBER * (max_files + 2),
                             too_big)
            # reads of 1 MiB, not tarfile's 10 KiB: fewer Python-level calls through _Capped
            with tarfile.open(fileobj=capped, mode="r|",  # type: ignore[call-overload]
                              bufsize=1 << 20) as tar:
                tar.copybufsize = 1 << 20
                size = 0
                for files, member in enumerate(tar, 1):
                    if files > max_files:
                        raise PayloadTooLarge(too_big, code="app_too_large")
                    if member.issparse() or not (member.isreg() or member.isdir()):
                        raise SkiffError(
                            f"the upload holds {member.name!r}, which is not a regular file or "
                            "directory; links and devices are not deployed (copy the file "
                            "the link points to instead)", code="bad_upload", status=400)
                    size += member.size
                    if size > max_bytes:
                        raise PayloadTooLarge(too_big, code="app_too_large")
                    if member.name.lstrip("./") == "skiff.yaml" and member.size > MAX_MANIFEST:
                        raise SkiffError(f"skiff.yaml is over {MAX_MANIFEST} bytes",
                                         code="bad_upload", status=400)
                    tar.extract(member, dest, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise SkiffError(f"the upload is not a valid .tar.gz of an app directory: {exc}",
                         code="bad_upload", status=400) from None


def uploads_dir(home: Path) -> Path:
    path = home / "uploads"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def remove_stale(home: Path) -> list[str]:
    """Remove upload files and directories whose server (the pid in their name) is
    gone; returns their names. Those of a live process are left alone."""
    path = home / "uploads"
    if not path.is_dir():
        return []
    removed = []
    for entry in path.iterdir():
        pid_text = entry.name.partition("-")[0]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
                continue  # alive (maybe not a Skiff, but not provably stale)
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


def relative_paths(exc: SkiffError, app_dir: Path) -> SkiffError:
    """``exc`` with paths inside the unpacked upload made relative to the app
    (``skiff.yaml:10:4``, not ``$SKIFF_HOME/uploads/…/app/skiff.yaml:10:4``): the
    uploader's CLI names its own directory, and the server's layout stays its own."""
    prefix = f"{app_dir}/"

    def fix(value: object) -> object:
        if isinstance(value, str):
            return value.replace(prefix, "").replace(str(app_dir), ".")
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        return value

    exc.message = str(fix(exc.message))
    exc.args = (exc.message,)
    exc.details = {k: fix(v) for k, v in exc.details.items()}
    return exc
