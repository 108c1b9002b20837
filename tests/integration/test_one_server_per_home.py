"""A second `skiff up` on a home a server runs on stops at once with a clear error."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import SkiffServer


def test_second_server_on_the_same_home_is_refused_naming_the_first(start_server, tmp_path,
                                                                  envs_dir) -> None:
    """It names the running server's pid and URL and exits 2, before opening any
    database (it used to wait ~30 s and die with `database is locked`)."""
    first: SkiffServer = start_server()
    env = {**os.environ, "SKIFF_ENVS_DIR": str(envs_dir)}
    second = subprocess.run([sys.executable, "-m", "skiff", "up", "--port", "0", "--home",
                             str(first.home)], capture_output=True, text=True, env=env,
                            timeout=60)
    assert second.returncode == 2, second.stdout + second.stderr
    err = " ".join(second.stderr.split())  # rich wraps long lines
    assert "home_in_use" in err
    assert f"pid {first.proc.pid}" in err
    assert first.url in err
    assert "Traceback" not in second.stderr + second.stdout
    assert first.http.get("/_skiff/api/health").status_code == 200  # the first serves on

    first.stop()  # its lock goes with it: the home can be served again
    again = start_server(home=first.home)
    assert again.http.get("/_skiff/api/health").status_code == 200
