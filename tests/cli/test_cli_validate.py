"""`skiff validate DIR` without a server: the manifest, then the handler imported in
a child process, each error naming the user's own file; `skiff deploy` runs it
first, and what the server itself refuses names the user's path too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cliproc import run_inprocess

MANIFEST = "apiVersion: skiff.dev/v1\nkind: MicroApp\nmetadata: {{name: {name}}}\nspec:\n{spec}"


def app(root: Path, name: str, spec: str, code: str | None = None, **files: str) -> Path:
    d = root / name
    d.mkdir()
    (d / "skiff.yaml").write_text(MANIFEST.format(name=name, spec=spec))
    if code is not None:
        (d / "app.py").write_text(code)
    for f, text in files.items():
        (d / f.replace("_", ".")).write_text(text)
    return d


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    return tmp_path


def msg(text: str) -> str:
    return " ".join(text.split())


def test_valid_app(here, monkeypatch):
    app(here, "fine", "  handler: app:handler\n", "def handler(event, context):\n    return 1\n")
    status, out, err = run_inprocess(monkeypatch, "validate", "fine")
    assert status == 0, err
    assert "valid fine (lambda): fine/skiff.yaml, handler app:handler imports" in msg(out)


def test_manifest_error_names_the_users_file(here, monkeypatch):
    app(here, "typo", "  handler: app:handler\n  resources: {memoryMB: lots}\n", "")
    status, _, err = run_inprocess(monkeypatch, "validate", "typo")
    assert status == 1
    assert ("[invalid_manifest] typo/skiff.yaml: spec.resources.memoryMB: expected an integer"
            in msg(err))


def test_import_error_names_the_users_file_and_line(here, monkeypatch):
    app(here, "broken", "  handler: app:handler\n", "import json\nRATE = 1 / 0\n")
    status, _, err = run_inprocess(monkeypatch, "validate", "broken")
    assert status == 1
    text = msg(err)
    assert "[import_failed] broken: importing 'app' failed: ZeroDivisionError" in text
    assert 'File "broken/app.py", line 2, in <module>' in text and "skiff-upload" not in text


def test_a_package_not_installed_here_is_a_warning(here, monkeypatch):
    app(here, "needs", "  handler: app:handler\n", "import nosuchpkg_xyz\n",
        requirements_txt="nosuchpkg-xyz==1.0\n")
    status, out, err = run_inprocess(monkeypatch, "validate", "needs")
    assert status == 0, err
    assert "'nosuchpkg_xyz' is not installed here" in msg(out)


def test_deploy_validates_first_and_server_errors_name_the_users_path(
        here, monkeypatch, server, admin_env):
    app(here, "half", "  handler: app:handler\n  resources: {timeout: -1}\n", "")
    status, _, err = run_inprocess(monkeypatch, "deploy", "half", env=admin_env)
    assert status == 1 and "half/skiff.yaml: spec.resources.timeout" in msg(err)
    assert server.admin.get("/apps/half").status_code == 404  # nothing was uploaded
    # past the local check, the server's own refusal names the same file
    status, _, err = run_inprocess(monkeypatch, "deploy", "half", "--skip-validate",
                                   env=admin_env)
    assert status == 1 and "half/skiff.yaml: spec.resources.timeout" in msg(err), err
    assert "uploads" not in err and str(server.home) not in err


def test_a_state_machine_directory_validates_as_one(here, monkeypatch):
    """kind: StateMachine: its manifest and definition file are read here (the server
    checks the ASL); a missing file names the field and the user's file."""
    d = here / "flow"
    d.mkdir()
    (d / "skiff.yaml").write_text("apiVersion: skiff.dev/v1\nkind: StateMachine\n"
                                  "metadata: {name: flow}\nspec: {definitionFile: f.asl.json}\n")
    status, out, err = run_inprocess(monkeypatch, "validate", "flow")
    assert status == 1 and "[invalid_manifest]" in err, out + err
    assert "flow/skiff.yaml: spec.definitionFile: file not found" in msg(err)
    (d / "f.asl.json").write_text('{"StartAt": "A", "States": {"A": {"Type": "Pass", '
                                  '"End": true}}}')
    status, out, err = run_inprocess(monkeypatch, "validate", "flow")
    assert status == 0 and "valid flow (state machine): flow/skiff.yaml" in msg(out), out + err
