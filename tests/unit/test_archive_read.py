"""An archive that does not read back is the operator's 422 archive_invalid, naming
the file, never a traceback."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from skiff.errors import DeployError
from skiff.platform.archive import Archiver


def _archiver(tmp_path: Path) -> Archiver:
    return Archiver(tmp_path, store=None, kv=None, broker=None)  # type: ignore[arg-type]


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("files", [
    None,  # not a tar.gz at all
    {"app.json": b"{}"},  # another format, the rest missing
    {"app.json": json.dumps({"format": 1}).encode()},  # revisions.json missing
])
def test_a_broken_archive_is_422(tmp_path: Path, files: dict | None) -> None:
    path = tmp_path / "a.tar.gz"
    if files is None:
        path.write_bytes(b"not an archive")
    else:
        _tar(path, files)
    with pytest.raises(DeployError) as err:
        _archiver(tmp_path).read(path)
    assert err.value.code == "archive_invalid" and err.value.status == 422
    assert str(path) in err.value.message
