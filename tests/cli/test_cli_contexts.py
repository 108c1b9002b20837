"""Where the CLI finds its server: `skiff login` contexts, the resolution order
(--url, $SKIFF_URL, the current context, a running local server), and a
"cannot connect" that names the URL and where it came from. Secrets go to the
server whenever one answers, never to a local store it does not read."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest

from skiff.cli.contexts import Context, Contexts, resolve
from tests.cliproc import failed, ok, run_inprocess, run_skiff


def _dead_url() -> str:
    with socket.socket() as sock:  # a port nothing listens on once this closes
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_contexts_file_is_private_and_replaced_whole(tmp_path, monkeypatch):
    """The file holds tokens: 0600 in a 0700 directory under $XDG_CONFIG_HOME/skiff."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    ctxs = Contexts()
    ctxs.add(Context("prod", "https://skiff.example.com", "t0k"))
    ctxs.add(Context("lab", "http://10.0.0.5:8080"), use=False)
    path = tmp_path / "skiff" / "contexts.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = Contexts()
    assert again.current == "prod" and again.active() == Context("prod", "https://skiff.example.com", "t0k")
    again.use("lab")
    again.remove("lab")
    assert Contexts().current is None and list(Contexts().items) == ["prod"]
    assert [p.name for p in path.parent.iterdir()] == ["contexts.json"]  # no temp file left


@pytest.mark.parametrize(("url", "env_url", "context", "expect", "source"), [
    ("http://flag:1", "http://env:2", True, "http://flag:1", "--url"),
    (None, "http://env:2", True, "http://env:2", "$SKIFF_URL"),
    (None, None, True, "http://ctx:3", "context 'work'"),
    (None, None, False, "http://127.0.0.1:8080", "the default address"),
])
def test_resolution_order(tmp_path, monkeypatch, url, env_url, context, expect, source):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("SKIFF_HOME", str(tmp_path / "nohome"))
    monkeypatch.delenv("SKIFF_PORT", raising=False)
    monkeypatch.delenv("SKIFF_ADMIN_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    if env_url:
        monkeypatch.setenv("SKIFF_URL", env_url)
    else:
        monkeypatch.delenv("SKIFF_URL", raising=False)
    if context:
        Contexts().add(Context("work", "http://ctx:3", "ctx-token"))
    target = resolve(url)
    assert (target.url, target.source.startswith(source)) == (expect, True)
    # the context's token goes only where the context points (or to its URL given by hand)
    assert target.token == ("ctx-token" if expect == "http://ctx:3" else None)


def test_running_local_server_is_found_and_a_dead_one_is_not(server, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("SKIFF_URL", raising=False)
    target = resolve(home=server.home)
    assert target.url == server.url and target.source.startswith("the server running on home")
    assert target.token == (server.home / "admin-token").read_text().strip()
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": 1}))
    (stale / "server.lock").write_text("1\n")  # nobody holds it: that server is gone
    assert resolve(home=stale).source.startswith("the default address")


def test_login_from_another_directory_then_every_command_uses_it(server, tmp_path, monkeypatch):
    """The newcomer's path: `skiff ls` elsewhere fails naming what it tried; `skiff login`;
    then any directory works. The first steps as a person runs them (subprocesses), the
    rest in-process (the same CLI, cwd and config directory)."""
    cfg, elsewhere = tmp_path / "cfg", tmp_path / "elsewhere"
    elsewhere.mkdir()
    dead = _dead_url()
    msg = failed(run_skiff("ls", cwd=elsewhere, config=cfg, env={"SKIFF_URL": dead}),
                 "unreachable")
    assert f"cannot reach Skiff at {dead} (from $SKIFF_URL)" in msg
    token = (server.home / "admin-token").read_text().strip()
    out = ok(run_skiff("login", server.url, "--token", token, "--name", "laptop",
                       cwd=elsewhere, config=cfg))
    assert "logged in" in out and "laptop" in out
    path = cfg / "skiff" / "contexts.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "hello" in ok(run_skiff("ls", cwd=elsewhere, config=cfg))

    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(cfg))

    def skiff(*args: str) -> tuple[int, str]:
        status, out, err = run_inprocess(monkeypatch, *args)
        return status, " ".join((out + err).split())

    # no token, and not the local server's URL: the server says so, and how to fix it
    status, msg = skiff("login", server.url, "--name", "notoken")
    assert status == 1 and "[unauthorized]" in msg and "--token TOKEN" in msg
    status, listing = skiff("context", "ls")
    assert "laptop" in listing and server.url in listing and token not in listing

    # a context that points at nothing says so, naming the context
    assert skiff("login", server.url, "--token", token, "--name", "old")[0] == 0
    data = json.loads(path.read_text())
    data["contexts"]["old"]["url"] = dead
    path.write_text(json.dumps(data))
    status, msg = skiff("ls")
    assert status == 1 and f"cannot reach Skiff at {dead} (from context 'old'" in msg
    assert "skiff context use" in msg
    assert skiff("context", "use", "laptop")[0] == 0
    assert "hello" in skiff("ls")[1]
    assert skiff("context", "rm", "old")[0] == 0
    status, msg = skiff("context", "use", "old")
    assert status == 1 and "[context_not_found] no context named 'old'" in msg

    # secrets follow the context to the server; nothing is written here
    assert skiff("secrets", "set", "ctx-secret", "v1")[0] == 0
    assert "ctx-secret" in {s["name"] for s in server.admin.get("/secrets").json()}
    assert not (elsewhere / ".skiff").exists()


def test_secrets_go_to_the_running_server_of_the_home(server, tmp_path):
    """With SKIFF_HOME naming a running server's home, `skiff secrets set` asks that
    server (which audits it as the caller) rather than writing its files underneath it."""
    done = run_skiff("secrets", "set", "home-secret", "v1", cwd=tmp_path, config=tmp_path,
                     env={"SKIFF_HOME": str(server.home)})
    ok(done)
    assert "home-secret" in {s["name"] for s in server.admin.get("/secrets").json()}
    entries = [e for e in server.admin.get("/audit").json() if "home-secret" in str(e["target"])]
    assert entries and not any(str(e["actor"]).startswith("local:") for e in entries), entries


def test_no_server_anywhere_keeps_the_local_store(tmp_path):
    """No server chosen and none answering: secrets are stored locally, as before."""
    home = tmp_path / "h"
    done = run_skiff("secrets", "set", "offline", "v1", cwd=tmp_path, config=tmp_path,
                     env={"SKIFF_HOME": str(home), "SKIFF_PORT": _dead_url().rsplit(":", 1)[1]})
    assert "stored" in ok(done)
    assert "offline" in ok(run_skiff("secrets", "ls", cwd=tmp_path, config=tmp_path,
                                     env={"SKIFF_HOME": str(home),
                                          "SKIFF_PORT": "9"}))
    assert os.listdir(home)
