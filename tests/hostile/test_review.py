"""The red team's round against the merged hardening: seams between entry paths and
lifecycle paths (a pre-initialized app's forks, ...) that the per-area suites miss.

Needs root (as CI runs): the sandbox layers are kernel features."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import httpx
import pytest
import yaml

from skiff.cli.client import pack
from tests.conftest import SkiffServer
from tests.hostile.conftest import neighbour_watch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")

APPS = Path(__file__).parent / "review_apps"
PRE_MEMORY_MB = 64  # tests/hostile/review_apps/pre-escape/skiff.yaml
# small body limits, so that filling the gateway's body budget takes a few requests
MAX_BODY = 256 * 1024
MAX_BUFFERED = 4 * MAX_BODY


@pytest.fixture(scope="module")
def review(tmp_path_factory, envs_dir):
    src = tmp_path_factory.mktemp("review-apps")
    shutil.copytree(APPS, src, dirs_exist_ok=True)
    server = SkiffServer(tmp_path_factory.mktemp("home"), [src], envs_dir,
                         env={"SKIFF_MAX_BODY_BYTES": str(MAX_BODY),
                              "SKIFF_MAX_BUFFERED_BYTES": str(MAX_BUFFERED),
                              "SKIFF_ASYNC_MAX_PENDING_PER_APP": "100"})
    yield server
    server.stop()


def test_preinit_instance_cannot_join_a_roomier_or_bound_cgroup(review):
    """A pre-initialized app's instances share its uid, and its forks' cgroups were
    delegated to that uid: an instance moved itself into a spare's cgroup, which had the
    platform's default limits (256 MB, 64 pids), not the app's, and into its sibling
    instances'. Now the delegation is taken back as soon as the child has joined, and a
    spare's cgroup carries the app's own limits for the moment it is delegated."""
    def look() -> dict:
        r = review.http.get("/pre-escape/")
        assert r.status_code == 200, r.text
        return r.json()["now"]

    with neighbour_watch(review):
        seen = look()
        roomy = [(w, limit) for w, limit in seen["writable"]
                 if limit is not None and limit > PRE_MEMORY_MB * 1024 * 1024]
        assert not roomy, roomy
        # a spare being forked right now is delegated for the microseconds it takes to join
        review.wait_for(lambda: not look()["writable"], "no cgroup its uid may join")
    assert review.http.get("/neighbour/").status_code == 200


def test_one_apps_queued_bodies_cannot_fill_the_gateways_body_budget(review):
    """Bodies are held until their invocation ends, and a slow app's queue is long
    (maxQueue 100, timeout 30 s): 101 requests of 6 MiB to it held all 512 MiB of
    SKIFF_MAX_BUFFERED_BYTES, and every other app's requests with a body got 503. Now one
    app's requests hold at most a quarter of the budget; the rest is left to the others."""
    outcomes: list[int] = []

    def hoard() -> None:
        with httpx.Client(base_url=review.url, timeout=60) as client:
            r = client.post("/hoarder/", params={"s": "3"}, content=b"x" * MAX_BODY)
            outcomes.append(r.status_code)

    with neighbour_watch(review):
        threads = [threading.Thread(target=hoard, daemon=True) for _ in range(6)]
        for t in threads:
            t.start()
        review.wait_for(lambda: outcomes.count(503) >= 2,
                        "the hoarder's bodies over its share to be refused", timeout=20)
        r = review.http.post("/neighbour/", content=b'{"order": 1}')
        assert r.status_code == 200, r.text
        for t in threads:
            t.join(60)
    assert set(outcomes) <= {200, 503}, outcomes
    assert 200 in outcomes, outcomes


FRONTPAGE = """def handler(event, context):
    return {"statusCode": 200, "body": "frontpage " + event.get("rawPath", "")}
"""


def frontpage_dir(tmp_path: Path) -> Path:
    app_dir = tmp_path / "frontpage"
    app_dir.mkdir()
    (app_dir / "handler.py").write_text(FRONTPAGE)
    (app_dir / "skiff.yaml").write_text(yaml.safe_dump({
        "apiVersion": "skiff.dev/v1", "kind": "MicroApp",
        "metadata": {"name": "frontpage", "owner": "red-team@example.com"},
        "spec": {"handler": "handler:handler", "routes": [{"path": "/"}]}}))
    return app_dir


def test_a_revoked_route_grant_stops_serving_the_route(review, tmp_path):
    """The operator grants a catch-all `/` and the app deploys with it; then the tenant
    misbehaves and the grant is revoked. The route used to stay until the app's next
    deploy, which is the tenant's to make (or never make), and came back at every restart.
    Now a revoke withdraws what the grant allowed at once."""
    app_dir = frontpage_dir(tmp_path)
    grant = {"app": "frontpage", "path": "/"}
    assert review.admin.put("/route-grants", json=grant).status_code == 200
    with neighbour_watch(review):
        r = review.admin.post("/apps", content=pack(app_dir),
                              headers={"content-type": "application/gzip"})
        assert r.status_code == 201, r.text
        assert review.http.get("/nobody-here/x").text == "frontpage /nobody-here/x"
        assert review.admin.request("DELETE", "/route-grants", json=grant).status_code == 200
        r = review.http.get("/nobody-here/x")
        assert r.status_code == 404, r.text
        assert review.http.get("/frontpage/").status_code == 200  # its own path stays
    assert review.admin.delete("/apps/frontpage").status_code == 200


def test_a_restart_serves_only_what_the_grants_allow_now(tmp_path, envs_dir):
    """A restart brought every app's current revision back with all its routes, checked
    against nothing: a revoked catch-all came back. Now it is withdrawn again."""
    home, apps = tmp_path / "home", tmp_path / "apps"
    apps.mkdir()
    shutil.copytree(APPS / "neighbour", apps / "neighbour")
    grant = {"app": "frontpage", "path": "/"}
    first = SkiffServer(home, [apps], envs_dir)
    try:
        assert first.admin.put("/route-grants", json=grant).status_code == 200
        r = first.admin.post("/apps", content=pack(frontpage_dir(tmp_path)),
                             headers={"content-type": "application/gzip"})
        assert r.status_code == 201, r.text
        assert first.http.get("/nobody-here/").status_code == 200
        assert first.admin.request("DELETE", "/route-grants", json=grant).status_code == 200
    finally:
        first.stop()
    again = SkiffServer(home, [apps], envs_dir)
    try:
        with neighbour_watch(again):
            assert again.http.get("/nobody-here/").status_code == 404
            assert again.http.get("/frontpage/").status_code == 200
    finally:
        again.stop()


def test_async_invocations_from_anyone_are_bounded(review):
    """Over HTTP, any client may ask for an async invocation: each is written to disk
    (its body up to SKIFF_MAX_BODY_BYTES) and answered 202. The sync path stops at
    maxInstances + maxQueue with 429; the async path had no bound at all, so an
    unauthenticated client filled the host's disk through any app. Now past
    SKIFF_ASYNC_MAX_PENDING_PER_APP pending async invocations (100 here), 429."""
    statuses: list[int] = []
    with neighbour_watch(review), httpx.Client(base_url=review.url, timeout=30) as client:
        for _ in range(130):  # maxInstances 1 + maxQueue 100, and some
            r = client.post("/hoarder/", params={"s": "2"}, content=b"x" * 1024,
                            headers={"x-skiff-invocation-type": "Event"})
            statuses.append(r.status_code)
    # what the async queue holds now goes with the app (a test module of its own)
    assert review.admin.delete("/apps/hoarder").status_code == 200
    assert 429 in statuses, f"every async invocation was accepted: {set(statuses)}"


def test_platform_alive_after_the_attacks(review):
    assert review.admin.get("/health").json()["status"] == "ok"
    assert review.http.get("/neighbour/").status_code == 200
