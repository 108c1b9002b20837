"""The red team's round against the merged hardening: seams between entry paths and
lifecycle paths (a pre-initialized app's forks, ...) that the per-area suites miss.

Needs root (as CI runs): the sandbox layers are kernel features."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import SkiffServer
from tests.hostile.conftest import neighbour_watch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")

APPS = Path(__file__).parent / "review_apps"
PRE_MEMORY_MB = 64  # tests/hostile/review_apps/pre-escape/skiff.yaml


@pytest.fixture(scope="module")
def review(tmp_path_factory, envs_dir):
    src = tmp_path_factory.mktemp("review-apps")
    shutil.copytree(APPS, src, dirs_exist_ok=True)
    server = SkiffServer(tmp_path_factory.mktemp("home"), [src], envs_dir)
    yield server
    server.stop()


def test_preinit_instance_cannot_join_a_roomier_or_bound_cgroup(review):
    """A pre-initialized app's instances share its uid, and its forks' cgroups were
    delegated to that uid: an instance moved itself into a spare's cgroup, which had the
    platform's default limits (256 MB, 64 pids), not the app's, and into its sibling
    instances'. Now a bound instance's cgroup is the platform's again, and a spare's
    carries the app's own limits."""
    with neighbour_watch(review):
        r = review.http.get("/pre-escape/")
        assert r.status_code == 200, r.text
        seen = r.json()["now"]
        own = seen["cgroup"]["memory"]
        writable = seen["writable"]
        assert not [w for w, _ in writable if w.endswith(own)], writable
        roomy = [(w, limit) for w, limit in writable
                 if limit is not None and limit > PRE_MEMORY_MB * 1024 * 1024]
        assert not roomy, roomy
        for w, _ in writable:  # whatever it may still join, it gains nothing by moving
            moved = review.http.get("/pre-escape/", params={"op": "move", "target": w})
            assert moved.status_code in (200, 502), moved.text
    assert review.http.get("/neighbour/").status_code == 200


def test_platform_alive_after_the_attacks(review):
    assert review.admin.get("/health").json()["status"] == "ok"
    assert review.http.get("/neighbour/").status_code == 200
