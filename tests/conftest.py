"""Shared fixtures: a real Skiff server in a subprocess on port 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_APPS = Path(__file__).resolve().parent / "apps"
EXAMPLES = ROOT / "examples"


class SkiffServer:
    """``skiff up DIRS --port 0`` as a child process, with its output captured."""

    def __init__(self, home: Path, dirs: list[Path], envs: Path, env: dict | None = None,
                 command: str = "up", args: list[str] | None = None) -> None:
        self.home = home
        self.lines: list[str] = []
        self._ready = threading.Event()
        # no test depends on the outside network: the dependency audit is off unless a test
        # points it at its own advisory server (tests/osv.py)
        full_env = {**os.environ, "SKIFF_ENVS_DIR": str(envs), "SKIFF_TICK_SECONDS": "0.1",
                    "SKIFF_ADVISORY_URL": "off", **(env or {})}
        full_env.pop("SKIFF_ADMIN_TOKEN", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "skiff", command, *map(str, dirs), "--port", "0",
             "--home", str(home), *(args or [])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env)
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(180) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("skiff did not start:\n" + "\n".join(self.lines))
        self.url = json.loads((home / "server.json").read_text())["url"]
        token = (home / "admin-token").read_text().strip()
        self.http = httpx.Client(base_url=self.url, timeout=60)
        self.admin = httpx.Client(base_url=self.url + "/_skiff/api", timeout=300,
                                  headers={"authorization": f"Bearer {token}"})

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("ready:"):
                self._ready.set()
        self._ready.set()

    def app(self, name: str) -> dict:
        return self.admin.get(f"/apps/{name}").json()

    def wait_for(self, predicate, what: str, timeout: float = 30.0):  # noqa: ANN001
        """Poll until ``predicate()`` is truthy; a readiness wait, not a timing assertion."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for c in ("http", "admin"):
            if hasattr(self, c):
                getattr(self, c).close()


@pytest.fixture(scope="session")
def envs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dependency environments shared by every server in the session (built once)."""
    return tmp_path_factory.mktemp("envs")


@pytest.fixture
def start_server(tmp_path: Path, envs_dir: Path):
    started: list[SkiffServer] = []

    def start(*dirs: Path, home: Path | None = None, env: dict | None = None,
              args: tuple[str, ...] = ()) -> SkiffServer:
        server = SkiffServer(home or tmp_path / "home", list(dirs), envs_dir, env, args=args)
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def test_apps_server(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path):
    """One server with every app under tests/apps, shared by a module's tests."""
    server = SkiffServer(tmp_path_factory.mktemp("home"), [TEST_APPS], envs_dir)
    yield server
    server.stop()
