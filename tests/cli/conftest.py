"""One server with tests/apps/hello for every CLI test here (they only read it, or
add names of their own)."""

from __future__ import annotations

import pytest

from tests.conftest import TEST_APPS, SkiffServer


@pytest.fixture(scope="package")
def server(tmp_path_factory, envs_dir):
    s = SkiffServer(tmp_path_factory.mktemp("home"), [TEST_APPS / "hello"], envs_dir)
    yield s
    s.stop()


@pytest.fixture
def admin_env(server) -> dict:
    return {"SKIFF_URL": server.url,
            "SKIFF_ADMIN_TOKEN": (server.home / "admin-token").read_text().strip()}
