"""Secrets by reference, rotation without failed requests, and the deploy-time scan."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SECRET_APPS = Path(__file__).resolve().parent.parent / "secretapps"


def fp(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def skiff(home: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SKIFF_HOME": str(home)}
    env.pop("SKIFF_URL", None)
    return subprocess.run([sys.executable, "-m", "skiff", *args], capture_output=True, text=True,
                          env=env, input=input, timeout=300)


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    dest = tmp_path / "src" / "vault"
    shutil.copytree(SECRET_APPS / "vault", dest)
    return dest


def test_missing_secret_fails_the_deploy_clearly(start_server, vault):
    """Deploying an app whose secret ref does not exist fails, naming the ref and the fix."""
    server = start_server()
    proc = skiff(server.home, "deploy", str(vault))
    assert proc.returncode == 1
    assert "secret_not_found" in proc.stderr
    assert "secret://orders-db" in proc.stderr and "skiff secrets set" in proc.stderr
    assert server.admin.get("/apps/vault").status_code == 404


def test_secret_injected_and_rotation_replaces_instances_without_failures(start_server, vault,
                                                                         tmp_path):
    """The current version reaches the instance; rotating replaces instances while
    requests keep succeeding; values never appear in listings."""
    home = tmp_path / "home"
    assert skiff(home, "secrets", "set", "orders-db", input="first-password\n").returncode == 0
    server = start_server(vault, home=home)
    assert server.http.get("/vault/").json()["fingerprint"] == fp("first-password")

    def hammer(n: int) -> list[int]:
        return [server.http.get("/vault/").status_code for _ in range(n)]

    with cf.ThreadPoolExecutor(2) as pool:
        load = [pool.submit(hammer, 150) for _ in range(2)]
        rotated = skiff(home, "secrets", "rotate", "orders-db", "second-password")
        assert rotated.returncode == 0, rotated.stderr
        statuses = [s for f in load for s in f.result()]
    assert set(statuses) == {200}
    server.wait_for(lambda: server.http.get("/vault/").json()["fingerprint"]
                    == fp("second-password"), "the rotated secret to be served")
    listing = skiff(home, "secrets", "ls").stdout + server.admin.get("/secrets").text
    assert "orders-db" in listing
    assert "password" not in listing


def test_hardcoded_credentials_reject_the_deploy(start_server, vault):
    """A hard-coded key is found at deploy, named by file:line; an explicit reason lets it through."""
    server = start_server()
    skiff(server.home, "secrets", "set", "orders-db", "x")
    (vault / "config.py").write_text('AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"\n')
    proc = skiff(server.home, "deploy", str(vault))
    assert proc.returncode == 1
    assert "hardcoded_secret" in proc.stderr
    assert "config.py:1" in proc.stderr
    assert "AKIAIOSFODNN7EXAMPLE" not in proc.stderr
    allowed = skiff(server.home, "deploy", str(vault), "--allow-secret-scan-findings",
                    "documented example key from the AWS docs")
    assert allowed.returncode == 0, allowed.stderr
    logs = server.admin.get("/apps/vault/logs").json()
    assert any("documented example key" in entry["line"] for entry in logs)


def test_skiff_up_warns_on_sample_data_and_takes_an_explicit_override(start_server, tmp_path):
    """An unmodified app with AWS's sample event and Flask's SECRET_KEY = "dev" starts
    with a warning line; a real finding in shipped code needs `skiff up
    --allow-secret-scan-findings REASON`, whose reason is logged."""
    app = tmp_path / "apps" / "sampled"
    (app / "events").mkdir(parents=True)
    (app / "skiff.yaml").write_text("apiVersion: skiff.dev/v1\nkind: MicroApp\nmetadata:\n"
                                    "  name: sampled\nspec:\n  handler: app:handler\n")
    (app / "app.py").write_text('SECRET_KEY = "dev"\n\n\ndef handler(event, context):\n'
                                '    return {"ok": True}\n')
    key = "AKIA" + "IOSFODNN7" + "EXAMPLE"
    (app / "events" / "event.json").write_text(f'{{"accessKeyId": "{key}"}}\n')
    server = start_server(app.parent)
    assert server.http.get("/sampled/").json() == {"ok": True}
    assert any("events/event.json:1" in line and "warning" in line for line in server.lines)
    server.stop()
    (app / "config.py").write_text(f'ACCESS_KEY_ID = "{key}"\n')
    refused = start_server(app.parent, home=tmp_path / "home2")
    assert refused.http.get("/sampled/").status_code == 404
    assert any("config.py:1" in line for line in refused.lines)
    refused.stop()
    allowed = start_server(app.parent, home=tmp_path / "home3",
                           args=("--allow-secret-scan-findings", "a sample key, reviewed"))
    assert allowed.http.get("/sampled/").json() == {"ok": True}
    logs = allowed.admin.get("/apps/sampled/logs").json()
    assert any("a sample key, reviewed" in entry["line"] for entry in logs)
