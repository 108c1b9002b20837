"""The one contract every Registry backend keeps (the SQLite Store and
PostgresRegistry via the ``registry`` fixture)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from skiff.store.registry import Registry, RevisionRow, pack_code, unpack_code
from skiff.store.uids import FIRST_APP_UID


def _row(app: str, revision: str, created: float = 1.0) -> RevisionRow:
    return RevisionRow(app, revision, {"name": app, "n": [1, 2]}, f"/code/{app}/{revision}",
                       "env-1", created)


def test_revisions_and_the_current_one(registry: Registry) -> None:
    """Revisions come back equal, oldest first; set_current registers the app and moves it."""
    registry.put_revision(_row("a", "r2", created=2.0))
    registry.put_revision(_row("a", "r1", created=1.0))
    assert registry.current("a") is None
    registry.set_current("a", "r1")
    registry.set_current("b", "x")
    registry.set_current("a", "r2")
    assert registry.current("a") == "r2"
    assert registry.apps() == [("a", "r2"), ("b", "x")]
    assert registry.revision("a", "r1") == _row("a", "r1", created=1.0)
    assert registry.revision("a", "nope") is None
    assert [r.revision for r in registry.revisions("a")] == ["r1", "r2"]


def test_a_stored_revision_is_never_overwritten(registry: Registry) -> None:
    """put_revision of an existing (app, revision) keeps the first row: revisions are immutable."""
    registry.put_revision(_row("a", "r1"))
    registry.put_revision(RevisionRow("a", "r1", {"other": True}, "/elsewhere", "env-2", 9.0))
    assert registry.revision("a", "r1") == _row("a", "r1")


def test_uids_are_kept_per_app_and_never_reused(registry: Registry) -> None:
    """An app keeps its uid; a released uid is never handed out again, even to the same name."""
    a = registry.uid_for("a")
    b = registry.uid_for("b")
    assert a >= FIRST_APP_UID and b != a
    assert registry.uid_for("a") == a
    registry.release_uid("a")
    registry.release_uid("a")  # twice is fine
    again = registry.uid_for("a")
    assert again not in (a, b)


def test_concurrent_first_uid_requests_agree(registry: Registry) -> None:
    """Eight threads asking for the same new app's uid at once all get one uid."""
    got: list[int] = []
    threads = [threading.Thread(target=lambda: got.append(registry.uid_for("new")))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1


def test_route_grants(registry: Registry) -> None:
    """Grants are listed by app, host (None: any host) and path; revoking says whether one went."""
    registry.grant_route("a", None, "/shared")
    registry.grant_route("a", None, "/shared")  # idempotent
    registry.grant_route("b", "example.com", "/b")
    assert [(g["app"], g["host"], g["path"]) for g in registry.route_grants()] == [
        ("a", None, "/shared"), ("b", "example.com", "/b")]
    assert [g["path"] for g in registry.route_grants("b")] == ["/b"]
    assert isinstance(registry.route_grants("a")[0]["created"], float)
    assert registry.revoke_route("a", None, "/shared") is True
    assert registry.revoke_route("a", None, "/shared") is False
    assert registry.route_grants("a") == []


def test_code_bundles_round_trip(registry: Registry, tmp_path: Path) -> None:
    """A revision's code packed into the registry unpacks elsewhere byte for byte."""
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "app.py").write_text("def handler(e, c):\n    return 1\n")
    (src / "pkg" / "data.bin").write_bytes(bytes(range(256)))
    registry.put_bundle("a", "r1", pack_code(src))
    assert registry.bundle("a", "r2") is None
    out = unpack_code(registry.bundle("a", "r1"), tmp_path / "out")
    assert (out / "app.py").read_text() == (src / "app.py").read_text()
    assert (out / "pkg" / "data.bin").read_bytes() == bytes(range(256))
    registry.put_bundle("a", "r1", b"replaced")
    assert registry.bundle("a", "r1") == b"replaced"


def test_delete_app_forgets_everything_but_its_uid(registry: Registry) -> None:
    """delete_app drops the app, its revisions, bundles and grants; the uid is released apart."""
    registry.put_revision(_row("a", "r1"))
    registry.set_current("a", "r1")
    registry.put_bundle("a", "r1", b"tar")
    registry.grant_route("a", None, "/a")
    registry.put_revision(_row("b", "r1"))
    uid = registry.uid_for("a")
    registry.delete_app("a")
    assert registry.current("a") is None and registry.revisions("a") == []
    assert registry.bundle("a", "r1") is None and registry.route_grants("a") == []
    assert registry.uid_for("a") == uid
    assert [r.app for r in registry.revisions("b")] == ["b"]


def test_unpack_refuses_paths_out_of_the_destination(tmp_path: Path) -> None:
    """A bundle naming ../ or an absolute path is refused, nothing written outside."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(tarfile.TarError):
        unpack_code(buf.getvalue(), tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()


def test_has_bundle_says_whether_one_is_stored(registry: Registry) -> None:
    """has_bundle answers without fetching: stored, not stored, and gone with the app."""
    registry.put_revision(_row("a", "r1"))
    registry.set_current("a", "r1")
    assert registry.has_bundle("a", "r1") is False
    registry.put_bundle("a", "r1", b"tar")
    assert registry.has_bundle("a", "r1") is True and registry.has_bundle("a", "r2") is False
    registry.delete_app("a")
    assert registry.has_bundle("a", "r1") is False


def test_a_bundle_leaves_bytecode_out(tmp_path: Path) -> None:
    """__pycache__ stays out of a bundle: the node that unpacks compiles for its own Python."""
    src = tmp_path / "src"
    (src / "__pycache__").mkdir(parents=True)
    (src / "pkg" / "__pycache__").mkdir(parents=True)
    (src / "app.py").write_text("x = 1\n")
    (src / "pkg" / "m.py").write_text("y = 2\n")
    (src / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (src / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    out = unpack_code(pack_code(src), tmp_path / "out")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "app.py", "pkg", "pkg/m.py"]


def test_unpack_refuses_a_bundle_over_the_limits_before_writing(tmp_path: Path) -> None:
    """A bundle that expands past max_bytes or max_files is refused (413 app_too_large)
    and nothing of it is written: a few KB of zeros may expand to gigabytes."""
    from skiff.errors import PayloadTooLarge

    src = tmp_path / "src"
    src.mkdir()
    (src / "zeros.bin").write_bytes(bytes(1 << 20))
    (src / "b.txt").write_text("b")
    data = pack_code(src)
    assert len(data) < 10_000
    for limits in ({"max_bytes": 1 << 19}, {"max_files": 1}):
        with pytest.raises(PayloadTooLarge) as err:
            unpack_code(data, tmp_path / "dest", **limits)
        assert err.value.code == "app_too_large"
        assert not (tmp_path / "dest").exists()
    out = unpack_code(data, tmp_path / "dest", max_bytes=1 << 21, max_files=2)
    assert (out / "zeros.bin").stat().st_size == 1 << 20
