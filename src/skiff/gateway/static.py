"""Static files of one immutable revision. Because a revision never changes,
each file's ETag is a hash of its content, computed once."""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

_CACHE_MAX = 256 * 1024  # keep small files in memory; larger ones are read per request

mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("application/manifest+json", ".webmanifest")
mimetypes.add_type("image/svg+xml", ".svg")
mimetypes.add_type("application/wasm", ".wasm")


@dataclass
class StaticFile:
    path: Path
    content_type: str
    etag: str
    size: int
    data: bytes | None


class StaticSite:
    def __init__(self, root: Path, mount: str = "/") -> None:
        self.root = root.resolve()
        self.mount = "/" + mount.strip("/") if mount.strip("/") else ""
        self._files: dict[str, StaticFile | None] = {}

    def lookup(self, path: str) -> StaticFile | None:
        """The file for a request path relative to the app, or None."""
        if self.mount:
            if not (path == self.mount or path.startswith(self.mount + "/")):
                return None
            path = path[len(self.mount):] or "/"
        try:
            return self._files[path]
        except KeyError:
            pass
        found = self._resolve(path)
        if len(self._files) < 10_000:
            self._files[path] = found
        return found

    def _resolve(self, path: str) -> StaticFile | None:
        rel = path.lstrip("/")
        candidate = (self.root / rel).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            return None  # ../ escapes are never served
        if candidate.is_dir():
            candidate = candidate / "index.html"
        if not candidate.is_file():
            return None
        data = candidate.read_bytes()
        ctype = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/json", "text/javascript"):
            ctype += "; charset=utf-8"
        etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
        return StaticFile(candidate, ctype, etag, len(data), data if len(data) <= _CACHE_MAX else None)

    @staticmethod
    def body(f: StaticFile) -> bytes:
        return f.data if f.data is not None else f.path.read_bytes()


def etag_matches(if_none_match: str, etag: str) -> bool:
    if if_none_match.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return etag in tags
