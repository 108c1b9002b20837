"""Revision ids: the same files and the same normalized manifest always give
the same id, and any change gives a new one."""

from __future__ import annotations

import hashlib
import json
import os
from fnmatch import fnmatchcase
from pathlib import Path

from .model import Manifest

IGNORE_FILE = ".skiffignore"
SKIPPED_DIRS = frozenset({
    ".git", ".venv", "venv", "__pycache__", ".skiff", "node_modules", ".pytest_cache",
})
SKIPPED_FILES = ("*.pyc",)


def manifest_json(manifest: Manifest) -> bytes:
    """Canonical JSON of ``manifest.to_dict()``: sorted keys, no whitespace."""
    return json.dumps(manifest.to_dict(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def iter_app_files(app_dir: Path) -> list[Path]:
    """The app's files as sorted relative paths, without caches, virtualenvs,
    VCS data and what ``.skiffignore`` lists (fnmatch patterns, one a line,
    "#" comments; a pattern with "/" matches the relative path, otherwise
    the name of any file or directory)."""
    app_dir = Path(app_dir)
    patterns = [*SKIPPED_FILES, *_ignore_patterns(app_dir / IGNORE_FILE)]
    found: list[Path] = []
    for root, dirs, files in os.walk(app_dir):
        rel_root = Path(root).relative_to(app_dir)
        # Pruning in place keeps os.walk out of skipped trees entirely.
        dirs[:] = [d for d in dirs
                   if d not in SKIPPED_DIRS and not _ignored(rel_root / d, patterns)]
        for name in files:
            rel = rel_root / name
            if not _ignored(rel, patterns) and (app_dir / rel).is_file():
                found.append(rel)
    # POSIX strings sort the same on every OS (Path order is case-folded on Windows).
    return sorted(found, key=Path.as_posix)


def content_hash(app_dir: Path, manifest: Manifest) -> str:
    """First 12 hex chars of sha256 over each app file (path and bytes) and
    the canonical manifest JSON."""
    app_dir = Path(app_dir)
    digest = hashlib.sha256()
    for rel in iter_app_files(app_dir):
        path = app_dir / rel
        # Path and size frame each file, so no two file sets hash alike by
        # shifting bytes from one file into the next.
        digest.update(f"{rel.as_posix()}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    digest.update(b"manifest\0")
    digest.update(manifest_json(manifest))
    return digest.hexdigest()[:12]


def _ignore_patterns(ignore_file: Path) -> list[str]:
    try:
        lines = ignore_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    # "build/" names a directory like "build" does; "/build" is only the top one.
    patterns = (line.strip().rstrip("/") for line in lines)
    return [p for p in patterns if p and not p.startswith("#")]


def _ignored(rel: Path, patterns: list[str]) -> bool:
    posix = rel.as_posix()
    return any(fnmatchcase(posix, p.lstrip("/")) if "/" in p else fnmatchcase(rel.name, p)
               for p in patterns)
