"""Static files of a revision, and the one byte-budgeted cache of their contents.

Threat model: any unauthenticated client picks the request path. Many spellings
of one file (``/x``, ``/./x``, ``//x``, ``/a/../x``, ``%2e``...) must cost what
one file costs, so contents are cached by the file they resolve to (its path,
inode, mtime and size), never by the spelling, and only within a byte budget
shared by every app; bigger files are streamed from disk, not held. A path that
cannot name a file (a NUL byte, a name too long for the file system, a loop of
links) is a plain miss.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import posixpath
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

# Files up to this size are read whole, hashed for their ETag and may be cached;
# larger ones get an ETag from their identity and are streamed in chunks.
CACHE_MAX_FILE = 256 * 1024
STREAM_CHUNK = 256 * 1024
# Spellings remembered per site (each maps to a real file; misses are not kept,
# so junk paths cost a resolve, not memory). Bounded so that symlinked
# directories cannot make the map grow without end.
_RESOLVED_MAX = 4096
_PATH_MAX = 4096  # longer request paths cannot name a file on Linux (PATH_MAX)

mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("application/manifest+json", ".webmanifest")
mimetypes.add_type("image/svg+xml", ".svg")
mimetypes.add_type("application/wasm", ".wasm")


@dataclass(frozen=True)
class StaticFile:
    path: Path
    content_type: str
    etag: str
    size: int
    inode: int
    mtime_ns: int

    @property
    def key(self) -> tuple[str, int, int, int]:
        return (str(self.path), self.inode, self.mtime_ns, self.size)


class StaticSite:
    def __init__(self, root: Path, mount: str = "/") -> None:
        self.root = root.resolve()
        self.mount = "/" + mount.strip("/") if mount.strip("/") else ""
        self._resolved: dict[str, Path] = {}
        self._meta: dict[str, StaticFile] = {}  # by resolved path: at most one per real file

    def lookup(self, path: str) -> StaticFile | None:
        """The file for a request path relative to the app, or None."""
        if self.mount:
            if not (path == self.mount or path.startswith(self.mount + "/")):
                return None
            path = path[len(self.mount):] or "/"
        if "\x00" in path:
            return None
        key = posixpath.normpath("/" + path.lstrip("/"))  # ./, //, a/.. spell one path
        if len(key) > _PATH_MAX:
            return None
        candidate = self._resolved.get(key)
        if candidate is None:
            candidate = self._resolve(key)
            if candidate is None:
                return None
            if len(self._resolved) >= _RESOLVED_MAX:
                del self._resolved[next(iter(self._resolved))]
            self._resolved[key] = candidate
        try:
            st = os.stat(candidate)
        except OSError:
            return None
        meta = self._meta.get(str(candidate))
        if meta is None or (meta.inode, meta.mtime_ns, meta.size) != (
                st.st_ino, st.st_mtime_ns, st.st_size):
            meta = self._describe(candidate, st)
            if meta is None:
                return None
            self._meta[str(candidate)] = meta
        return meta

    def _resolve(self, key: str) -> Path | None:
        try:
            candidate = (self.root / key.lstrip("/")).resolve()
            if candidate != self.root and self.root not in candidate.parents:
                return None  # ../ and links out of the site are never served
            if candidate.is_dir():
                candidate = candidate / "index.html"
            return candidate if candidate.is_file() else None
        except (OSError, ValueError, RuntimeError):  # too long, NUL, a loop of links
            return None

    @staticmethod
    def _describe(path: Path, st: os.stat_result) -> StaticFile | None:
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/json", "text/javascript"):
            ctype += "; charset=utf-8"
        if st.st_size <= CACHE_MAX_FILE:
            try:
                data = path.read_bytes()
            except OSError:
                return None
            etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
        else:  # hashing a big file per change would read all of it: its identity will do
            etag = f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"'
        return StaticFile(path, ctype, etag, st.st_size, st.st_ino, st.st_mtime_ns)


class StaticCache:
    """Contents of small static files, least recently used first out, within
    ``budget`` bytes over every app of the platform."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self._data: OrderedDict[tuple[str, int, int, int], bytes] = OrderedDict()

    def get(self, f: StaticFile) -> bytes | None:
        """The whole content of ``f`` if it is small enough to be held, else None
        (stream it with :func:`read_chunks`)."""
        if f.size > CACHE_MAX_FILE or f.size > self.budget:
            return None
        key = f.key
        data = self._data.get(key)
        if data is not None:
            self._data.move_to_end(key)
            return data
        try:
            data = f.path.read_bytes()
        except OSError:
            return None
        if len(data) != f.size:  # changed under us: serve it, do not keep it
            return data
        self._data[key] = data
        self.size += len(data)
        while self.size > self.budget:
            _, old = self._data.popitem(last=False)
            self.size -= len(old)
        return data


def read_chunk(path: Path, offset: int, size: int) -> bytes:
    """``size`` bytes of ``path`` from ``offset`` (fewer at its end); run off the loop."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def etag_matches(if_none_match: str, etag: str) -> bool:
    if if_none_match.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return etag in tags
