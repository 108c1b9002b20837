"""`skiff rm APP` says what goes (routes, instances, triggers, the queues it owns by
name, KV, code) and asks; --yes skips the question; a script without --yes gets
confirmation_required (exit 2) instead of a prompt that hangs."""

from __future__ import annotations

import io
import sys

import pytest

from skiff.cli.removal import confirm, goes
from skiff.errors import SkiffError
from tests.cliproc import failed, run_inprocess, run_skiff

MANIFEST = """\
apiVersion: skiff.dev/v1
kind: MicroApp
metadata: {name: doomed, owner: tests@example.com}
spec:
  handler: handler:handler
  routes: [{path: /doom}, {host: doom.example.com}]
  triggers:
    - {queue: doomed-jobs}
    - {schedule: rate(1 hour)}
  queues: [{name: doomed-box}]
  async: {onSuccess: doomed-done}
"""


def described(manifest: dict) -> dict:
    return {"name": "doomed", "path": "/doomed/", "host": "doomed.localhost", "instances": 2,
            "manifest": manifest}


def as_dict(text: str) -> dict:
    import yaml

    from skiff.manifest import parse_manifest

    return parse_manifest(yaml.safe_load(text)).to_dict()


def test_the_list_names_every_part_that_goes():
    lines = goes(described(as_dict(MANIFEST)), 3, purge=False)
    assert lines == [
        "skiff rm doomed removes:",
        "  routes     /doomed/, doomed.localhost, /doom, doom.example.com",
        "  instances  2 running (stopped first)",
        "  triggers   queue doomed-jobs, schedule rate(1 hour)",
        "  queues     doomed-box, doomed-dlq, doomed-done, doomed-events-dlq, doomed-jobs, "
        "doomed-jobs-dlq (those no other app owns now, with their messages)",
        "  KV         every item of the app",
        "  code       3 revision(s) on disk",
        "it is archived first: `skiff restore doomed` brings it back"]


def test_purge_says_nothing_brings_it_back():
    static = as_dict("apiVersion: skiff.dev/v1\nkind: MicroApp\nmetadata: {name: doomed}\n"
                     "spec: {static: public}\n")
    lines = goes(described(static), 1, purge=True)
    assert "  triggers   none" in lines and lines[-1].startswith("--purge: no archive")
    assert any(line.startswith("  queues     none") for line in lines)


@pytest.mark.parametrize(("yes", "tty", "answer", "expected"), [
    (True, False, None, True), (False, True, True, True), (False, True, False, False)])
def test_confirm_goes_ahead_only_when_told(yes, tty, answer, expected):
    asked: list[str] = []

    def ask(question: str) -> bool:
        asked.append(question)
        return answer

    assert confirm("doomed", yes, ask, lambda: tty) is expected
    assert asked == ([] if yes else ["remove doomed?"])


def test_without_a_terminal_or_yes_it_refuses():
    with pytest.raises(SkiffError) as info:
        confirm("doomed", False, lambda _q: True, lambda: False)
    assert info.value.code == "confirmation_required" and info.value.exit_code == 2
    assert "--yes" in info.value.details["hint"]


@pytest.fixture
def doomed(tmp_path):
    app = tmp_path / "doomed"
    app.mkdir()
    (app / "skiff.yaml").write_text(MANIFEST.replace("  routes: [{path: /doom}, "
                                                     "{host: doom.example.com}]\n", ""))
    (app / "handler.py").write_text("def handler(event, context):\n    return {'ok': True}\n")
    return app


def test_rm_asks_refuses_in_a_script_and_removes_on_yes(server, admin_env, doomed,
                                                         monkeypatch, tmp_path, capsys):
    def deploy() -> None:
        status, out, err = run_inprocess(monkeypatch, "deploy", str(doomed), env=admin_env)
        assert status == 0, out + err

    deploy()
    # a script (stdin not a terminal) without --yes: refused, nothing removed
    done = run_skiff("rm", "doomed", cwd=tmp_path, config=tmp_path, env=admin_env, input="")
    msg = failed(done, "confirmation_required")
    assert done.returncode == 2 and "hint: add --yes" in msg
    assert "doomed-jobs-dlq" in done.stdout and "skiff restore doomed" in done.stdout
    assert server.admin.get("/apps/doomed").status_code == 200

    # a person who answers no keeps it
    monkeypatch.setattr(sys, "stdin", _Terminal("n\n"))
    status, out, err = run_inprocess(monkeypatch, "rm", "doomed", env=admin_env)
    assert status == 0 and "kept doomed: nothing removed" in out, err
    assert "remove doomed? [y/N]" in capsys.readouterr().out  # the prompt, on the terminal
    assert server.admin.get("/apps/doomed").status_code == 200

    # yes at the prompt removes it and its queues
    monkeypatch.setattr(sys, "stdin", _Terminal("y\n"))
    status, out, err = run_inprocess(monkeypatch, "rm", "doomed", env=admin_env)
    assert status == 0 and "deleted doomed" in out, out + err
    capsys.readouterr()
    assert server.admin.get("/apps/doomed").status_code in (404, 410)
    queues = {q["name"] for q in server.admin.get("/queues").json()}
    assert not {"doomed-jobs", "doomed-box"} & queues

    # --yes asks nothing, even without a terminal
    deploy()
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    status, out, err = run_inprocess(monkeypatch, "rm", "doomed", "--yes", "--purge",
                                     env=admin_env)
    assert status == 0 and "deleted doomed" in out, err
    assert "remove doomed?" not in capsys.readouterr().out
    assert "--purge: no archive is kept" in out


class _Terminal(io.StringIO):
    """A person's answers on stdin, as a terminal."""

    def isatty(self) -> bool:
        return True
