"""Deploy, rollback and the CLI against a running server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_APPS


def skiff(server, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "SKIFF_HOME": str(server.home), "COLUMNS": "200"}
    env.pop("SKIFF_ADMIN_TOKEN", None)
    proc = subprocess.run([sys.executable, "-m", "skiff", *args], capture_output=True, text=True,
                          env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"skiff {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def server(start_server):
    return start_server()


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    dest = tmp_path / "src" / "hello"
    shutil.copytree(TEST_APPS / "hello", dest)
    return dest


def test_deploy_new_revision_and_rollback(server, hello):
    """Deploy makes a content-hashed revision; a change makes a new one; rollback returns to the old."""
    out = skiff(server, "deploy", str(hello)).stdout
    first = server.app("hello")["revision"]
    assert first in out
    assert server.http.get("/hello/").json()["greeting"] == "hello, world"
    # same content → same revision, nothing changes
    assert "unchanged" in skiff(server, "deploy", str(hello)).stdout
    (hello / "skiff.yaml").write_text((hello / "skiff.yaml").read_text().replace(
        "GREETING: hello", "GREETING: howdy"))
    skiff(server, "deploy", str(hello))
    second = server.app("hello")["revision"]
    assert second != first
    assert server.http.get("/hello/").json()["greeting"] == "howdy, world"
    skiff(server, "rollback", "hello")
    assert server.app("hello")["revision"] == first
    assert server.http.get("/hello/").json()["greeting"] == "hello, world"
    skiff(server, "rollback", "hello", second[:6])
    assert server.http.get("/hello/").json()["greeting"] == "howdy, world"


def test_broken_app_is_rejected_and_old_revision_keeps_serving(server, hello):
    """A deploy whose import fails is rejected with a traceback summary; the old revision serves."""
    skiff(server, "deploy", str(hello))
    good = server.app("hello")["revision"]
    (hello / "handler.py").write_text("import not_a_module_anywhere\n\ndef handler(e, c):\n    return 1\n")
    proc = skiff(server, "deploy", str(hello), check=False)  # `skiff validate` stops it here
    assert proc.returncode == 1
    assert "import_failed" in proc.stderr and "not_a_module_anywhere" in proc.stderr
    assert 'handler.py", line 1' in proc.stderr
    proc = skiff(server, "deploy", str(hello), "--skip-validate", check=False)  # the server's trial
    assert proc.returncode == 1
    assert "init_failed" in proc.stderr
    assert "not_a_module_anywhere" in proc.stderr
    assert server.app("hello")["revision"] == good
    assert server.http.get("/hello/").status_code == 200


def test_malformed_manifest_is_rejected_with_field_path(server, hello):
    """A bad skiff.yaml is rejected naming the field; the old revision keeps serving."""
    skiff(server, "deploy", str(hello))
    good = server.app("hello")["revision"]
    (hello / "skiff.yaml").write_text((hello / "skiff.yaml").read_text().replace(
        "memoryMB: 128", "memoryMB: lots"))
    proc = skiff(server, "deploy", str(hello), check=False)
    assert proc.returncode == 1
    assert "invalid_manifest" in proc.stderr
    assert "spec.resources.memoryMB" in proc.stderr
    assert server.app("hello")["revision"] == good


def test_failed_dependency_install_rejects_the_deploy(server, hello):
    """A requirements.txt that cannot install rejects the deploy with the installer's error."""
    skiff(server, "deploy", str(hello))
    good = server.app("hello")["revision"]
    (hello / "requirements.txt").write_text("skiff-no-such-package-exists==9.9.9\n")
    proc = skiff(server, "deploy", str(hello), check=False)
    assert proc.returncode == 1
    assert "dependency_install_failed" in proc.stderr
    assert "skiff-no-such-package-exists" in proc.stderr
    assert server.app("hello")["revision"] == good


def test_ls_invoke_and_logs(server, hello):
    """ls shows the app with stats; invoke passes a JSON event; logs show platform lines."""
    skiff(server, "deploy", str(hello))
    server.http.get("/hello/")
    out = skiff(server, "invoke", "hello", "--data", '{"n": 1}').stdout
    assert json.loads(out)["event"] == {"n": 1}
    listing = skiff(server, "ls").stdout
    assert "hello" in listing and server.app("hello")["revision"] in listing
    data = json.loads(skiff(server, "ls", "--json").stdout)
    assert data[0]["requests"] >= 2
    logs = skiff(server, "logs", "hello").stdout
    assert "deployed" in logs


def test_unauthorized_cli_gets_a_clear_error(server, hello, tmp_path):
    """Without the token the CLI says how to get one."""
    env = {**os.environ, "SKIFF_HOME": str(tmp_path / "elsewhere"), "SKIFF_ADMIN_TOKEN": "wrong"}
    proc = subprocess.run([sys.executable, "-m", "skiff", "ls", "--url", server.url],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert "unauthorized" in proc.stderr


def test_schema_command_prints_json_schema():
    """`skiff schema` prints a JSON Schema for editors."""
    proc = subprocess.run([sys.executable, "-m", "skiff", "schema"], capture_output=True, text=True)
    schema = json.loads(proc.stdout)
    assert schema["properties"]["apiVersion"]


def test_dev_reloads_on_change(tmp_path, envs_dir, hello):
    """`skiff dev` serves one app and redeploys it when a file changes."""
    from tests.conftest import SkiffServer

    server = SkiffServer(tmp_path / "devhome", [hello], envs_dir, command="dev")
    try:
        assert server.http.get("/hello/").json()["greeting"] == "hello, world"
        (hello / "handler.py").write_text((hello / "handler.py").read_text().replace(
            'f"{os.environ', 'f"reloaded {os.environ'))
        server.wait_for(lambda: server.http.get("/hello/").json()["greeting"].startswith("reloaded"),
                        "the change to be served")
        (hello / "handler.py").write_text("def handler(:\n")
        server.wait_for(lambda: any("reload failed" in line for line in server.lines),
                        "the broken change to be reported")
        assert server.http.get("/hello/").json()["greeting"].startswith("reloaded")
    finally:
        server.stop()


def test_preinit_app_whose_init_fails_is_rejected(server, hello):
    """A pre-initialized app whose init raises is rejected at deploy with the error."""
    skiff(server, "deploy", str(hello))
    good = server.app("hello")["revision"]
    (hello / "skiff.yaml").write_text((hello / "skiff.yaml").read_text().replace(
        "resources:", "scaling: {preinit: true}\n  resources:"))
    (hello / "handler.py").write_text("raise RuntimeError('model file missing')\n")
    proc = skiff(server, "deploy", str(hello), check=False)
    assert proc.returncode == 1
    assert "model file missing" in proc.stderr
    assert server.app("hello")["revision"] == good
    assert server.http.get("/hello/").status_code == 200
