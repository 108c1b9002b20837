"""A piped `skiff deploy` prints one plain line per stage (no spinner, no redraws):
validate, upload, resolve, install N packages (when it has requirements), build
environment, start trial instance, then the result."""

from __future__ import annotations

import shutil

from tests.cliproc import ok, run_skiff
from tests.conftest import EXAMPLES


def test_piped_deploy_shows_its_stages(server, admin_env, tmp_path):
    app = tmp_path / "guestbook-flask"
    shutil.copytree(EXAMPLES / "guestbook-flask", app,
                    ignore=shutil.ignore_patterns(".skiff", "__pycache__"))
    out = ok(run_skiff("deploy", str(app), cwd=tmp_path, config=tmp_path, env=admin_env))
    lines = out.splitlines()
    staged = [line.split(": ", 1)[1] for line in lines if line.startswith("deploy guestbook-flask: ")]
    assert staged[0].startswith("upload ") and staged[0].endswith(" KiB")
    assert staged[1].startswith("resolve ") and "requirement(s)" in staged[1]
    assert staged[2].startswith("install ") and "package(s)" in staged[2]
    assert staged[3:] == ["build environment", "start trial instance"]
    assert lines[0].startswith("valid guestbook-flask")
    assert "deployed guestbook-flask revision" in lines[-1] or "deployed" in out
    assert "\x1b[" not in out and "⠋" not in out  # plain text: no colour, no spinner
    assert server.admin.get("/apps/guestbook-flask").status_code == 200
