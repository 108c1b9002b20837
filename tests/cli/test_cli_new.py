"""`skiff new`: a git repository with a first commit, the YAML language server
modeline and schema, templateRef, and templates from a directory or a git URL."""

from __future__ import annotations

import subprocess

import yaml

from skiff.manifest import load_manifest
from tests.cliproc import run_inprocess


def git(cwd, *args) -> str:  # noqa: ANN001
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout


def test_new_starts_a_repository_ready_for_an_editor(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_inprocess(monkeypatch, "new", "notes", "-t", "static-site+api")
    assert status == 0, err
    app = tmp_path / "notes"
    assert git(app, "log", "--format=%s") == "New Skiff app notes (template skiff:static-site+api)\n"
    assert git(app, "status", "--porcelain") == ""  # everything is in the first commit
    assert "test_notes.py" in git(app, "ls-files") and ".gitignore" in git(app, "ls-files")
    text = (app / "skiff.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=./skiff.schema.json\n")
    assert (app / "skiff.schema.json").is_file()
    m = load_manifest(app)
    assert m.metadata.labels["templateRef"] == "skiff:static-site+api"
    assert "skiff test notes" in " ".join(out.split())


def test_templates_from_a_directory_and_a_git_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    catalog = tmp_path / "catalog" / "greeter"
    catalog.mkdir(parents=True)
    (catalog / "skiff.yaml").write_text(
        "apiVersion: skiff.dev/v1\nkind: MicroApp\nmetadata:\n  name: __APP_NAME__\n"
        "  labels:\n    team: blue\nspec:\n  handler: app:handler\n")
    (catalog / "app.py").write_text("def handler(event, context):\n    return '__APP_NAME__'\n")
    status, _, err = run_inprocess(monkeypatch, "new", "hi", "--template", str(catalog),
                                   "--no-git")
    assert status == 0, err
    labels = yaml.safe_load((tmp_path / "hi" / "skiff.yaml").read_text())["metadata"]["labels"]
    assert labels == {"templateRef": str(catalog.resolve()), "team": "blue"}
    assert not (tmp_path / "hi" / ".git").exists()
    assert "return 'hi'" in (tmp_path / "hi" / "app.py").read_text()

    git(catalog, "init", "-q")
    git(catalog, "add", "-A")
    git(catalog, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "t")
    url = f"file://{catalog}"
    status, _, err = run_inprocess(monkeypatch, "new", "hey", "--template", url)
    assert status == 0, err
    assert load_manifest(tmp_path / "hey").metadata.labels["templateRef"] == url
    assert len(git(tmp_path / "hey", "log", "--oneline").splitlines()) == 1  # its own history

    status, _, err = run_inprocess(monkeypatch, "new", "nope", "--template", "no-such")
    assert status == 1 and "[bad_template]" in err and "static-site+api" in " ".join(err.split())
