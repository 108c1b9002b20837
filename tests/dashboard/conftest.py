"""One server with the dashboard's test apps and real traffic, and a real browser.

The browser is Debian's chromium driven by Playwright; without it the browser tests
skip (locally) or fail (under CI=true, where .ci/postgres installs it)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SkiffServer

APPS = Path(__file__).parent / "apps"
CHROMIUM = "/usr/bin/chromium"


def tarball(src: Path, replace: dict[str, tuple[str, str]] | None = None) -> bytes:
    """``src`` as a deploy upload, with ``replace`` = {file: (old, new)} applied."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted(src.iterdir()):
            if not f.is_file():
                continue
            data = f.read_bytes()
            if replace and f.name in replace:
                old, new = replace[f.name]
                data = data.replace(old.encode(), new.encode())
            info = tarfile.TarInfo(f.name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[SkiffServer]:
    """web (two revisions, 200s and 500s, a secret ref) and jobs (a message in its DLQ)."""
    home = tmp_path_factory.mktemp("home")
    subprocess.run([sys.executable, "-m", "skiff", "secrets", "set", "dash-api-key",
                    "not-shown", "--home", str(home)], check=True, capture_output=True)
    s = SkiffServer(home, [APPS], envs_dir)
    try:
        for _ in range(20):
            assert s.http.get("/web/").text == "hello v1"
        for _ in range(3):
            assert s.http.get("/web/fail").status_code == 500
        first = s.app("web")["revision"]
        done = s.admin.post("/apps", content=tarball(APPS / "web", {
            "handler.py": ('GREETING = "hello v1"', 'GREETING = "hello v2"')}),
            headers={"content-type": "application/gzip"})
        assert done.status_code == 201, done.text
        assert s.wait_for(lambda: s.http.get("/web/").text == "hello v2", "revision 2")
        s.first_revision = first  # type: ignore[attr-defined]
        for _ in range(5):
            s.http.get("/web/")
        sent = s.admin.post("/queues/jobs/messages", json={"body": "job-1"})
        assert sent.status_code == 202, sent.text
        s.wait_for(lambda: _visible(s, "jobs-dlq") == 1, "the job in jobs-dlq")
        yield s
    finally:
        s.stop()


def _visible(s: SkiffServer, queue: str) -> int:
    return next((q["visible"] for q in s.admin.get("/queues").json() if q["name"] == queue), 0)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: .ci/postgres start installs it (apt-get "
                        "install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI runs these")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Playwright passes --no-sandbox (chromiumSandbox is off): the tests run as root
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()
