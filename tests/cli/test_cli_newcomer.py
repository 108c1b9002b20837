"""The issue's proof: a newcomer's first hour, from a fresh config directory, through
the real CLI, checking what a person reads at each step: new, test, dev with an
edit (on `skiff up`'s home), login to a running server from another directory,
deploy, invoke with a generated event, logs, rollback, rm, restart.

Two servers, a throwaway one and ~20 CLI runs: the longest test file, which CI's
workers run beside the others."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from tests.cliproc import failed, ok, run_skiff
from tests.conftest import SkiffServer

pytestmark = pytest.mark.timeout(900)  # minutes when the machine is busy


def test_a_newcomers_hour(tmp_path, envs_dir):
    cfg, work = tmp_path / "cfg", tmp_path / "work"
    work.mkdir()

    def skiff(*args: str) -> str:
        return ok(run_skiff(*args, cwd=work, config=cfg, env={"SKIFF_ENVS_DIR": str(envs_dir)}))

    assert "created" in skiff("new", "hello-api")
    app = work / "hello-api"
    assert "all gates passed" in skiff("test", "hello-api", "--requests", "5",
                                       "--max-p95", "60s")

    # dev: the home of `skiff up` here (./.skiff), an edit reloads
    dev = subprocess.Popen([sys.executable, "-m", "skiff", "dev", "hello-api", "--port", "0"],
                           cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={**run_env(cfg), "SKIFF_ENVS_DIR": str(envs_dir)})
    lines: list[str] = []
    ready, reloaded = threading.Event(), threading.Event()

    def pump() -> None:
        for line in dev.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("ready:"):
                ready.set()
            if "reloaded" in line:
                reloaded.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert ready.wait(180), "".join(lines)
        assert (work / ".skiff" / "server.json").exists() and not (app / ".skiff").exists()
        manifest = app / "skiff.yaml"
        edited = manifest.read_text().replace("GREETING: Hello", "GREETING: Howdy")
        for attempt in range(12):  # the watcher may start just after `ready:`; edit again
            manifest.write_text(edited + f"# edit {attempt}\n")
            if reloaded.wait(10):
                break
        assert reloaded.is_set(), "".join(lines)
        assert "Howdy, Ada!" in skiff("invoke", "hello-api", "--path", "/hello?name=Ada")
    finally:
        dev.terminate()
        dev.wait(30)

    # a server elsewhere: unreachable names its source, then login from this directory
    server = SkiffServer(tmp_path / "server-home", [], envs_dir)
    try:
        msg = failed(run_skiff("ls", cwd=work, config=cfg, env={"SKIFF_PORT": "9"}),
                     "unreachable")
        assert "(from the default address" in msg
        token = (server.home / "admin-token").read_text().strip()
        assert "logged in" in skiff("login", server.url, "--token", token, "--name", "team")
        out = skiff("deploy", "hello-api")
        assert "valid hello-api" in out and "deployed hello-api revision" in out
        first = server.app("hello-api")["revision"]

        (work / "ev.json").write_text(skiff("event", "generate", "apigw-http", "--path",
                                            "/hello", "--query", "name=Lin"))
        assert "Howdy, Lin!" in skiff("invoke", "hello-api", "--event", "ev.json")
        assert f"revision {first} deployed" in skiff("logs", "hello-api")

        manifest.write_text(manifest.read_text().replace("GREETING: Howdy", "GREETING: Hi"))
        skiff("deploy", "hello-api")
        assert server.app("hello-api")["revision"] != first
        assert f"rolled back hello-api to revision {first}" in skiff("rollback", "hello-api")
        assert "Howdy, Ada!" in skiff("invoke", "hello-api", "--path", "/hello?name=Ada")

        assert "deleted hello-api" in skiff("rm", "hello-api", "--yes")
        server.stop()
        server = SkiffServer(tmp_path / "server-home", [], envs_dir)  # restart (a new port)
        skiff("login", server.url, "--token", token, "--name", "team")
        assert "hello-api" not in [a["name"] for a in json.loads(skiff("ls", "--json"))]
        assert server.http.get("/hello-api/").status_code == 410
    finally:
        server.stop()


def run_env(cfg):  # noqa: ANN001, ANN201
    import os

    env = {k: v for k, v in os.environ.items()
           if k not in ("SKIFF_URL", "SKIFF_ADMIN_TOKEN", "SKIFF_HOME")}
    return {**env, "XDG_CONFIG_HOME": str(cfg)}
