"""Discovery over a real git repository by two authors: each kind of micro app is
found with its app name and the owner git history points at; virtualenvs, plain
modules and registered apps are not; large files are skipped and said so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from skiff.governance.discover import (
    dockerfile_finds,
    python_finds,
    scan,
    template_finds,
)
from tests.governance.sweep_repo import ALICE, BOB, make_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("discover"))


def test_every_kind_is_found_with_its_owner(repo: Path) -> None:
    found = scan([repo])
    assert sorted((f.kind, f.name, f.owner) for f in found.finds) == [
        ("asgi", "menu", BOB), ("docker", "rota", BOB), ("lambda", "billing", ALICE),
        ("lambda", "notes", ALICE), ("sam", "ordersfunction", ALICE),
        ("skiff", "notes", ALICE)]
    assert all(f.repo == str(repo) for f in found.finds)
    assert not any(".venv" in f.path or "helpers" in f.path for f in found.finds)


def test_a_registered_app_is_left_out_with_its_tree(repo: Path) -> None:
    found = scan([repo], registered={"notes"})
    assert not any(f.name == "notes" for f in found.finds)
    assert {f.name for f in found.finds} == {"billing", "menu", "ordersfunction", "rota"}


def test_outside_git_there_is_no_owner_and_large_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "app.py").write_text("def handler(event, context):\n    pass\n"
                                             + "#" * 2000)
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "app.py").write_text("def handler(event, context):\n    pass\n")
    found = scan([tmp_path], max_bytes=1000)
    assert [(f.name, f.owner, f.repo) for f in found.finds] == [("small", None, None)]
    assert found.skipped == [f"{tmp_path / 'big' / 'app.py'}: larger than 1000 bytes"]


def test_user_code_is_read_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w')\nimport flask\n"
                                      "app = flask.Flask(__name__)\n")
    assert [f.kind for f in scan([tmp_path]).finds] == ["wsgi"]
    assert not marker.exists()


@pytest.mark.parametrize(("source", "expected"), [
    ("def handler(event, context): pass", [("lambda", "def handler(event, context)")]),
    ("async def main(event, context): pass", [("lambda", "def main(event, context)")]),
    ("def handler(event): pass", []),
    ("class A:\n    def handler(event, context): pass", []),  # a method, not a handler
    ("import functions_framework\n@functions_framework.http\ndef hello(request): pass",
     [("functions-framework", "@functions_framework.http def hello")]),
    ("from starlette.applications import Starlette\napp = Starlette()",
     [("asgi", "starlette: Starlette()")]),
    ("from django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()",
     [("wsgi", "django: get_wsgi_application()")]),
    ("def broken(:", []),
])
def test_python_signatures(source: str, expected: list) -> None:
    assert python_finds(source) == expected


def test_templates_and_dockerfiles() -> None:
    sls = "service: s\nfunctions:\n  hello:\n    handler: handler.hello\n"
    assert template_finds("serverless.yml", sls) == [
        ("serverless", "hello", "serverless.yml function, handler handler.hello")]
    assert template_finds("template.yaml", "Resources:\n  B:\n    Type: AWS::S3::Bucket\n") == []
    assert template_finds("template.yaml", ": : not yaml [") == []
    assert dockerfile_finds("RUN pip install gunicorn\nCMD python app.py\n") == []
    assert dockerfile_finds("ENTRYPOINT gunicorn -b :80 app:app\n") == [
        ("docker", "ENTRYPOINT runs gunicorn")]
    assert dockerfile_finds('CMD ["flask", "run"]\n') == []  # JSON form: words apart
    assert dockerfile_finds("CMD flask run --host 0.0.0.0\n") == [("docker", "CMD runs flask run")]


def test_cli_scans_without_a_server(repo: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "skiff", "discover", str(repo), "--json",
                           "--home", str(tmp_path / "nohome")],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert len(out["finds"]) == 6 and out["undeclared_egress"] is None
    missing = subprocess.run([sys.executable, "-m", "skiff", "discover", str(tmp_path / "nope"),
                              "--home", str(tmp_path / "nohome")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "does not exist" in " ".join(missing.stderr.split())
    assert "Traceback" not in missing.stderr
