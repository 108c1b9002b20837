"""Revision ids: content_hash and the file list it covers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from skiff.manifest import Manifest, content_hash, iter_app_files, manifest_json, parse_manifest


def manifest(**resources: object) -> Manifest:
    return parse_manifest({"apiVersion": "skiff.dev/v1", "kind": "MicroApp",
                           "metadata": {"name": "app"},
                           "spec": {"handler": "app:handler", "resources": resources}})


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "lib").mkdir(parents=True)
    (root / "app.py").write_text("def handler(event, context):\n    return 1\n")
    (root / "lib" / "util.py").write_text("X = 1\n")
    (root / "skiff.yaml").write_text("# the manifest\n")
    return root


def test_files_are_sorted_relative_paths(app: Path) -> None:
    """Only the app's own files, relative and sorted."""
    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (app / "stale.pyc").write_bytes(b"\0")
    for skipped in (".git", ".venv", "venv", ".skiff", "node_modules", ".pytest_cache"):
        (app / skipped).mkdir()
        (app / skipped / "file").write_text("x")
    assert iter_app_files(app) == [Path("app.py"), Path("lib/util.py"), Path("skiff.yaml")]


def test_skiffignore_patterns(app: Path) -> None:
    """.skiffignore lines match names anywhere, or relative paths when they hold a '/'."""
    (app / "notes.md").write_text("x")
    (app / "lib" / "README.md").write_text("x")
    (app / "build").mkdir()
    (app / "build" / "out.js").write_text("x")
    (app / "lib" / "build").mkdir()
    (app / "lib" / "build" / "keep.js").write_text("x")
    (app / ".skiffignore").write_text("# comments and blank lines are skipped\n\n"
                                      "*.md\n/build/\n")
    assert iter_app_files(app) == [Path(".skiffignore"), Path("app.py"),
                                   Path("lib/build/keep.js"), Path("lib/util.py"),
                                   Path("skiff.yaml")]


def test_hash_is_stable_and_location_independent(app: Path, tmp_path: Path) -> None:
    """Same code and manifest give the same 12-hex-char id, wherever the app lives."""
    first = content_hash(app, manifest())
    assert len(first) == 12 and int(first, 16) >= 0
    assert content_hash(app, manifest()) == first
    copy = shutil.copytree(app, tmp_path / "elsewhere")
    assert content_hash(copy, manifest()) == first


def test_hash_changes_with_code(app: Path) -> None:
    """Editing, adding or renaming a file gives a new id."""
    seen = {content_hash(app, manifest())}
    (app / "app.py").write_text("def handler(event, context):\n    return 2\n")
    seen.add(content_hash(app, manifest()))
    (app / "new.py").write_text("")
    seen.add(content_hash(app, manifest()))
    (app / "new.py").rename(app / "renamed.py")
    seen.add(content_hash(app, manifest()))
    assert len(seen) == 4


def test_hash_changes_with_manifest(app: Path) -> None:
    """A different normalized manifest gives a new id; an equivalent spelling does not."""
    assert content_hash(app, manifest(memoryMB=512)) != content_hash(app, manifest())
    assert content_hash(app, manifest(timeout="30s")) == content_hash(app, manifest())


def test_hash_ignores_caches(app: Path) -> None:
    """__pycache__ and *.pyc do not change the id."""
    before = content_hash(app, manifest())
    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"compiled")
    (app / "lib" / "util.pyc").write_bytes(b"compiled")
    assert content_hash(app, manifest()) == before


def test_manifest_json_is_canonical() -> None:
    """Sorted keys and no whitespace, so equal manifests give equal bytes."""
    data = manifest_json(manifest())
    assert data.startswith(b'{"apiVersion":"skiff.dev/v1","kind":"MicroApp","metadata":')
    assert b" " not in data
