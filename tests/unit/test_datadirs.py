"""Data directory volumes (a loop-mounted ext4 image per app) and the bounded
output tail of setup steps."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from skiff.platform.datadirs import DataDirs
from skiff.platform.setup_steps import _TAIL_BYTES, _Tail

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not DataDirs(Path("/"), root=True).volumes,
                                reason="loop-mounted volumes need root and mkfs.ext4")


@pytest.fixture
def dirs(tmp_path: Path):
    d = DataDirs(tmp_path, root=True)
    yield d
    d.close()


@needs_root
def test_a_volume_is_owned_by_the_app_kept_across_mounts_and_grown_at_a_mount(dirs, tmp_path):
    path, device = dirs.ensure("blog", 8, 100_123)
    assert device.startswith("/dev/loop") and path == tmp_path / "data" / "blog"
    assert path.stat().st_uid == 100_123
    (path / "kept.txt").write_text("kept")
    assert dirs.ensure("blog", 8, 100_123) == (path, device)  # mounted once
    dirs.close()  # a restart: unmounted, the image stays
    assert not (path / "kept.txt").exists()
    path, device = dirs.ensure("blog", 16, 100_123)  # mounted again, and grown
    assert (path / "kept.txt").read_text() == "kept"
    assert dirs.ensure("blog", 32, 100_123)[1] == device  # mounted: grows at the next start
    used, quota = dirs.usage("blog")
    assert 12 << 20 < quota <= 16 << 20 and used < quota  # ext4 keeps ~1 MiB of its own
    assert dirs.ensure("blog", 4, 100_123)[1] == device  # never shrunk (data could go)
    assert dirs.usage("blog")[1] == quota


@needs_root
def test_pack_and_unpack_keep_the_files_and_give_them_to_the_new_uid(dirs):
    path, _ = dirs.ensure("blog", 8, 100_123)
    (path / "db").mkdir()
    (path / "db" / "rows.sqlite").write_bytes(b"rows")
    (path / "link").symlink_to("/etc/passwd")  # stored as a link, never followed
    data = dirs.pack("blog")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert sorted(tar.getnames()) == ["db", "db/rows.sqlite", "link"]
        assert tar.getmember("link").issym()
    dirs.remove("blog")
    assert not path.exists() and dirs.pack("blog") is None
    assert dirs.unpack("blog", data, 8, 100_456) == ["link"]  # it leads outside: left out
    assert (path / "db" / "rows.sqlite").read_bytes() == b"rows"
    assert not (path / "link").is_symlink()
    assert (path / "db" / "rows.sqlite").stat().st_uid == 100_456


@needs_root
def test_what_would_land_outside_the_directory_is_left_out(dirs):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../outside")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    assert dirs.unpack("blog", buf.getvalue(), 8, 100_123) == ["../outside"]
    assert not (dirs.base / "outside").exists()


def test_without_root_a_plain_directory_and_no_quota(tmp_path):
    d = DataDirs(tmp_path, root=False)
    path, device = d.ensure("blog", 8, os.geteuid())
    assert device == "" and path.is_dir() and "none" in d.quota


def test_the_output_tail_is_bounded_and_keeps_the_last_lines():
    tail = _Tail()
    lines = b"".join(b"line %d\n" % i for i in range(200_000))  # ~2.3 MB of output
    tail.read(io.BufferedReader(io.BytesIO(lines)))  # type: ignore[arg-type]
    kept = tail.lines()
    assert kept[-1] == "line 199999" and len("\n".join(kept)) <= _TAIL_BYTES
    assert sum(len(c) for c in tail._chunks) < 2 * _TAIL_BYTES
