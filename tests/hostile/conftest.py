"""Shared fixtures of the hostile suite: an allowed upstream, and a watch that
keeps a well-behaved neighbour app busy while an attack runs."""

from __future__ import annotations

import contextlib
import http.server
import shutil
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import SkiffServer

APPS = Path(__file__).parent / "apps"


class _Upstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        body = b"hello from the allowed upstream"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def upstream():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def skiff(tmp_path_factory, envs_dir, upstream):
    src = tmp_path_factory.mktemp("apps")
    shutil.copytree(APPS, src, dirs_exist_ok=True)
    manifest = src / "attacker" / "skiff.yaml"
    manifest.write_text(manifest.read_text().replace(
        "egress: []", f'egress: ["127.0.0.1:{upstream}"]'))
    # loopback is off limits to every app unless the operator allows it: allow the upstream
    server = SkiffServer(tmp_path_factory.mktemp("home"), [src], envs_dir,
                         env={"OPERATOR_CANARY": "cloud-credentials",
                              "SKIFF_EGRESS_ALLOW": f"127.0.0.1:{upstream}"})
    yield server
    server.stop()


@contextlib.contextmanager
def neighbour_watch(skiff: SkiffServer):
    """Hit the neighbour app continuously while the block runs; all must succeed."""
    statuses: list[int] = []
    stop, running = threading.Event(), threading.Event()

    def run() -> None:
        with httpx.Client(base_url=skiff.url, timeout=10) as client:
            # at least a few requests, even when the attack is over in a millisecond
            while (not stop.is_set() or len(statuses) < 3) and len(statuses) < 10_000:
                statuses.append(client.get("/neighbour/").status_code)
                running.set()

    t = threading.Thread(target=run)
    t.start()
    running.wait(30)
    try:
        yield statuses
    finally:
        stop.set()
        t.join()
    assert statuses, "the neighbour was never called"
    assert set(statuses) == {200}, f"neighbour failed during the attack: {statuses}"
