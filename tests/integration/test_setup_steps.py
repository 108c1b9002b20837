"""Setup steps and data directories through a real server: a Flask tutorial-style
app (app factory, instance folder in $SKIFF_DATA_DIR, ``flask init-db`` as its
release step) and a Django app (collectstatic at build, migrate at release) run
with their own commands; the data directory is quota'd, survives revisions, is
invisible to another app, goes into the archive at ``skiff rm`` and comes back
with ``skiff restore``; a failing step rejects the deploy with 422 and the
command's last lines while the previous revision serves on."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest

from skiff.cli.client import pack
from tests.conftest import SkiffServer

APPS = Path(__file__).resolve().parent.parent / "setupapps"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path):
    # a small code size limit: a build's scratch volume is as big
    s = SkiffServer(tmp_path_factory.mktemp("home"), [APPS], envs_dir,
                    env={"SKIFF_MAX_APP_BYTES": str(16 << 20)})
    yield s
    s.stop()


def _deploy(server: SkiffServer, app: Path):  # noqa: ANN202 - an httpx response
    return server.admin.post("/apps", content=pack(app),
                             headers={"content-type": "application/gzip"})


def _variant(tmp_path: Path, name: str, yaml_edit: tuple[str, str] | None = None,
             files: dict[str, str] | None = None) -> Path:
    """A copy of a setup app with its skiff.yaml edited and files added."""
    dest = tmp_path / name
    shutil.copytree(APPS / name, dest, dirs_exist_ok=True)
    if yaml_edit:
        text = (dest / "skiff.yaml").read_text()
        assert yaml_edit[0] in text
        (dest / "skiff.yaml").write_text(text.replace(*yaml_edit))
    for rel, text in (files or {}).items():
        (dest / rel).write_text(text)
    return dest


def _release_runs(server: SkiffServer, expected: int) -> bool:
    """Whether the server's terminal shows ``expected`` runs of flaskr's release
    step (it prints them as they come, so this waits for them)."""
    return server.wait_for(lambda: sum(
        "flaskr | [platform] release: `flask --app flaskr init-db` done" in line
        for line in server.lines) == expected, f"release run {expected}", timeout=10)


def test_flaskr_init_db_ran_at_release_and_posts_outlive_revisions_and_rollbacks(
        server: SkiffServer, tmp_path: Path) -> None:
    """The release step made the tables; a post written by one revision is read by
    the next and by a rollback, each of which ran its release step first."""
    assert _release_runs(server, 1)
    created = server.http.post("/flaskr/create", data={"title": "first", "body": "kept"})
    assert created.status_code == 201, created.text
    v2 = _variant(tmp_path, "flaskr", files={"flaskr/version.py": "VERSION = 2\n"})
    deployed = _deploy(server, v2)
    assert deployed.status_code == 201 and deployed.json()["changed"], deployed.text
    assert _release_runs(server, 2)
    assert [p["title"] for p in server.http.get("/flaskr/").json()] == ["first"]
    back = server.admin.post("/apps/flaskr/rollback")
    assert back.status_code == 200, back.text
    assert _release_runs(server, 3)  # a rollback is a new release
    assert [p["title"] for p in server.http.get("/flaskr/").json()] == ["first"]


def test_code_is_read_only_and_the_data_dir_is_writable_up_to_its_quota(
        server: SkiffServer) -> None:
    where = server.http.get("/flaskr/where").json()
    assert where == {"code": "Read-only file system", "data": "written",
                     "data_dir": str(server.home / "data" / "flaskr")}
    filled = server.http.post("/flaskr/fill", params={"mb": 64})
    assert filled.status_code == 507  # ENOSPC inside the app, at its 16 MiB
    assert filled.json()["error"] == "No space left on device"
    assert 4 <= filled.json()["written_mb"] < 16


def test_another_app_cannot_see_a_data_dir(server: SkiffServer) -> None:
    """The hostile neighbour asks for flaskr's data directory by its host path."""
    for path in (server.home / "data" / "flaskr", server.home / "data"):
        seen = server.http.get("/peeker/", params={"path": str(path)})
        assert seen.text == "FileNotFoundError: No such file or directory", (path, seen.text)
    # the home holds only the mount points of the peeker's own code and egress socket
    home = server.http.get("/peeker/", params={"path": str(server.home)}).text
    assert home == "listed revisions,run"


def test_django_collectstatic_at_build_and_migrate_at_release(server: SkiffServer) -> None:
    """What collectstatic wrote into the revision is served as static files; the
    tables migrate made are in the data directory."""
    css = server.http.get("/djangonotes/static/notes/style.css")
    assert css.status_code == 200 and "notes-style" in css.text
    assert server.http.post("/djangonotes/notes/", data={"text": "hi"}).status_code == 201
    assert server.http.get("/djangonotes/notes/").json() == {"notes": ["hi"]}
    assert (server.home / "data" / "djangonotes" / "db.sqlite3").is_file()


def test_a_failing_release_is_422_with_its_output_and_the_old_revision_serves(
        server: SkiffServer, tmp_path: Path) -> None:
    before = server.app("flaskr")["revision"]
    bad = _variant(tmp_path, "flaskr", (
        "- flask --app flaskr init-db", "- echo migrating; echo schema-v3-missing >&2; exit 3"))
    resp = _deploy(server, bad)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "release_failed" and error["exit_code"] == 3
    assert error["output"] == ["migrating", "schema-v3-missing"]
    assert "exited with status 3" in error["message"] and "keeps serving" in error["message"]
    assert server.app("flaskr")["revision"] == before
    assert [p["title"] for p in server.http.get("/flaskr/").json()] == ["first"]


BUILDER = """\
apiVersion: skiff.dev/v1
kind: MicroApp
metadata: {{name: builder, owner: tests@example.com}}
spec:
  handler: handler:handler
  setupTimeout: 2
  build:
    - {command}
"""
HANDLER = """\
def handler(event, context):
    with open("built.txt") as f:
        return {"statusCode": 200, "body": f.read().strip()}
"""


def _builder(tmp_path: Path, command: str) -> Path:
    app = tmp_path / "builder"
    app.mkdir(exist_ok=True)
    (app / "skiff.yaml").write_text(BUILDER.format(command=command))
    (app / "handler.py").write_text(HANDLER)
    return app


def test_what_a_build_writes_is_part_of_the_revision(server: SkiffServer,
                                                     tmp_path: Path) -> None:
    resp = _deploy(server, _builder(tmp_path, "echo built-at-$SKIFF_PHASE-as-$(id -u) > built.txt"))
    assert resp.status_code == 201, resp.text
    body = server.http.get("/builder/").text
    assert body.startswith("built-at-build-as-") and body != "built-at-build-as-0"
    built = server.home / "revisions" / "builder" / resp.json()["revision"] / "built.txt"
    assert built.stat().st_uid == 0 and built.stat().st_mode & 0o022 == 0  # the platform's now


@pytest.mark.parametrize(("command", "said"), [
    ("echo half-done; exit 7", "exited with status 7"),
    ("sleep 30", "did not finish within spec.setupTimeout (2 s)"),
    ("ln -s /etc/passwd built.txt", "a link to /etc/passwd outside the app's code"),
    # past the code size limit (in files below RLIMIT_FSIZE): its own volume is full,
    # not the host's disk
    ("for i in 1 2 3 4; do head -c 9000000 /dev/zero > big$i || exit 1; done",
     "exited with status 1"),
    # the server's own port on the host's loopback: the build has a loopback of its own
    ('python -c "import socket,os; socket.create_connection((\'127.0.0.1\', '
     'int(os.environ[\'PORT\'])), 2)"', "exited with status 1"),
])
def test_a_failing_build_is_422_and_stores_nothing(server: SkiffServer, tmp_path: Path,
                                                   command: str, said: str) -> None:
    port = server.url.rsplit(":", 1)[1]
    app = _builder(tmp_path, command)
    (app / "skiff.yaml").write_text((app / "skiff.yaml").read_text().replace(
        "  setupTimeout: 2", f"  setupTimeout: 2\n  env: {{PORT: '{port}'}}"))
    resp = _deploy(server, app)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "build_failed" and said in error["message"], error
    if "7" in said:
        assert error["output"] == ["half-done"]
    if "big" in command:
        assert "No space left on device" in error["output"][-1]
    leftovers = [p.name for p in (server.home / "revisions" / "builder").iterdir()
                 if p.name.startswith(".")]
    assert leftovers == []


def test_rm_archives_the_data_and_restore_brings_it_back(server: SkiffServer) -> None:
    removed = server.admin.delete("/apps/flaskr")
    assert removed.status_code == 200, removed.text
    assert not (server.home / "data" / "flaskr.ext4").exists()
    with tarfile.open(removed.json()["archive"]) as archive:
        data = archive.extractfile("data.tar.gz").read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(data)) as files:
        assert "flaskr.sqlite" in files.getnames()
    restored = server.admin.post("/apps/flaskr/restore")
    assert restored.status_code == 200, restored.text
    assert [p["title"] for p in server.http.get("/flaskr/").json()] == ["first"]
    assert server.http.get("/flaskr/where").json()["data"] == "written"  # the new uid owns it


def test_a_first_deploy_whose_release_fails_leaves_no_data_behind(server: SkiffServer,
                                                                  tmp_path: Path) -> None:
    """Or whoever deploys the name next would find what its release wrote."""
    app = tmp_path / "fresh"
    app.mkdir()
    (app / "skiff.yaml").write_text(BUILDER.replace("builder", "fresh").replace(
        "  build:\n    - {command}\n", "  resources: {{diskMB: 8}}\n  release:\n    - {command}\n")
        .format(command="touch $SKIFF_DATA_DIR/mine && echo $SKIFF_DATA_DIR && exit 1"))
    (app / "handler.py").write_text("def handler(event, context):\n    return 'ok'\n")
    resp = _deploy(server, app)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["output"] == [str(server.home / "data" / "fresh")]
    assert not (server.home / "data" / "fresh.ext4").exists()
    assert not (server.home / "data" / "fresh").exists()
