"""App uids across homes and deletions, with real servers sharing one host-wide
uid registry (as every Skiff on a host does)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skiff.cli.client import pack
from tests.conftest import SkiffServer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="uids are dropped only as root")

PROBER = Path(__file__).resolve().parent.parent / "hostile" / "filesystem_apps" / "prober"


def _uid(server: SkiffServer) -> int:
    r = server.http.get("/prober/user")
    assert r.status_code == 200, r.text
    return r.json()["result"]["uid"]


def test_homes_share_no_uids_and_a_copied_home_refuses_to_start(tmp_path, envs_dir):
    """Two homes on one host get different uids for the same app; a deleted app's
    uid is not given to the next app of that name; a copy of a home (same
    recorded uids) refuses to start, naming the home that holds them."""
    env = {"SKIFF_UID_REGISTRY": str(tmp_path / "uids.db")}
    apps = tmp_path / "apps"
    shutil.copytree(PROBER, apps / "prober")
    a = SkiffServer(tmp_path / "a", [apps], envs_dir, env=env)
    b = SkiffServer(tmp_path / "b", [apps], envs_dir, env=env)
    try:
        first_a, first_b = _uid(a), _uid(b)
        assert first_a != first_b
        assert a.admin.delete("/apps/prober").status_code == 200
        r = a.admin.post("/apps", content=pack(apps / "prober"),
                         headers={"content-type": "application/gzip"})
        assert r.status_code == 201, r.text
        assert _uid(a) not in {first_a, first_b}
    finally:
        a.stop()
        b.stop()
    shutil.copytree(tmp_path / "a", tmp_path / "c",
                    ignore=shutil.ignore_patterns("*.sock", "server.json"))
    proc = subprocess.run([sys.executable, "-m", "skiff", "up", "--port", "0", "--home",
                           str(tmp_path / "c")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env, "SKIFF_ENVS_DIR": str(envs_dir)})
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "uid_conflict" in output
    assert str((tmp_path / "a").resolve()) in output.replace("\n", "")
