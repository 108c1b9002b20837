"""What an app can make the platform write, hold and connect through its own
channels (its instance socket, its egress socket), with the SDK bypassed: it
forges no platform log lines, its SDK call flood does not stall a neighbour,
its idle egress connections do not exhaust the gateway's file descriptors, and
its manifest grants it no loopback, link-local, metadata or platform address.

Needs root (as CI runs): the sandbox layers are kernel features."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from skiff.cli.client import pack
from tests.conftest import SkiffServer
from tests.hostile.conftest import neighbour_watch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")

APPS = Path(__file__).parent / "channel_apps"
# The server runs with few descriptors (soft 1024, hard 4096), as a gateway with an
# unraised default limit would: an app's idle connections exhausted it before the caps.
FD_LIMITS = (1024, 4096)
HOARD = 3000


@pytest.fixture(scope="module")
def loopback_service():
    """A service on the host's loopback that no app may reach: it records connections."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        yield server


@pytest.fixture(scope="module")
def channel(tmp_path_factory, envs_dir, upstream):
    src = tmp_path_factory.mktemp("channel-apps")
    shutil.copytree(APPS, src, dirs_exist_ok=True)
    for manifest in src.glob("*/skiff.yaml"):
        manifest.write_text(manifest.read_text().replace("UPSTREAM", str(upstream)))
    def few_fds() -> None:  # in the server's process only: a lowered hard limit is for good
        resource.setrlimit(resource.RLIMIT_NOFILE, FD_LIMITS)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess, "Popen", functools.partial(subprocess.Popen,
                                                             preexec_fn=few_fds))
        server = SkiffServer(tmp_path_factory.mktemp("home"), [src], envs_dir,
                             env={"SKIFF_EGRESS_ALLOW": f"127.0.0.1:{upstream}"})
    yield server
    server.stop()


def logs(server: SkiffServer, app: str, **params) -> list[dict]:
    return server.admin.get(f"/apps/{app}/logs", params={"limit": 5000, **params}).json()


# -- 4. log lines ---------------------------------------------------------------------------

def test_raw_log_frames_cannot_forge_platform_lines(channel):
    """Log frames written straight to the instance socket land as the app's own stdout or
    stderr, with a request id only if the instance is handling it, on one line each."""
    victim = channel.http.get("/neighbour/").headers["x-skiff-request-id"]
    old = channel.http.get("/intruder/nothing").headers["x-skiff-request-id"]
    with neighbour_watch(channel):
        r = channel.http.get("/intruder/forge", params={"victim": victim, "old": old})
    assert r.status_code == 200, r.text
    own = r.headers["x-skiff-request-id"]

    def written() -> list[dict]:
        return [e for e in logs(channel, "intruder")
                if any(w in e["line"] for w in ("honest", "forged", "evil.test"))]

    rows = channel.wait_for(lambda: (lambda got: got if len(got) >= 6 else None)(written()),
                            "all six lines")
    assert len(rows) == 6, rows

    def row(start: str) -> dict:
        (found,) = [e for e in rows if e["line"].startswith(start)]
        return found

    assert {e["stream"] for e in rows} <= {"stdout", "stderr"}, rows
    assert not [e for e in logs(channel, "intruder", stream="platform") if "forged" in e["line"]]
    assert not [e for e in logs(channel, "intruder", stream="egress") if "evil" in e["line"]]
    assert row("forged: victim request id")["request_id"] == ""
    assert row("forged: old request id")["request_id"] == ""
    honest = row("honest: own request id")
    assert (honest["request_id"], honest["stream"]) == (own, "stderr")
    (two,) = [e for e in rows if e["line"].startswith("forged: one")]
    assert "\n" not in two["line"] and "\r" not in two["line"] and "\x1b" not in two["line"]
    assert "\\n00:00:00" in two["line"] and "\\x1b[2K" in two["line"]
    assert "\\u2028" in two["line"] and "\\u202e" in two["line"]
    assert not [e for e in logs(channel, "neighbour") if "forged" in e["line"]]

    # `skiff logs` prints one line per row, none of them a platform line of the app's
    out = subprocess.run([sys.executable, "-m", "skiff", "logs", "intruder"], check=True,
                         capture_output=True, text=True, env={
                             **os.environ, "SKIFF_HOME": str(channel.home),
                             "SKIFF_URL": channel.url}).stdout
    printed = [line for line in out.splitlines() if "forged" in line or "evil" in line]
    assert len(printed) == 5, out
    assert all(re.match(r"^\d\d:\d\d:\d\d (-|\S{8}) +\S+ +std(out|err) ", line)
               for line in printed), printed


# -- 5. SDK calls ---------------------------------------------------------------------------

def test_sdk_call_flood_does_not_stall_a_neighbours_kv_calls(channel):
    """10,000 SDK calls in one burst from one app wait in that app's own queue: the
    neighbour's KV endpoint answers 200 within its own timeout throughout."""
    assert channel.http.get("/neighbour/kv").status_code == 200  # warm
    flood: dict = {}

    def run_flood() -> None:
        flood["response"] = channel.http.get("/intruder/flood", params={"n": 10_000})

    attacker = threading.Thread(target=run_flood)
    statuses: list[int] = []
    attacker.start()
    with httpx.Client(base_url=channel.url, timeout=30) as client:
        while attacker.is_alive() or len(statuses) < 5:
            statuses.append(client.get("/neighbour/kv").status_code)
    attacker.join()
    assert set(statuses) == {200}, statuses
    # the flood itself ran to its end (it is not what is being refused here)
    assert flood["response"].status_code == 200, flood["response"].text
    assert flood["response"].json() == {"answered": 10_000}


# -- 6. file descriptors ----------------------------------------------------------------------

def test_idle_egress_connections_cannot_exhaust_the_gateways_descriptors(channel, upstream):
    """An app opens thousands of idle connections to its egress socket: its cap refuses
    them (logged, rate-limited); the neighbour, the admin API and a fresh egress connection
    of the neighbour keep working on fresh connections."""
    assert channel.http.get("/neighbour/").status_code == 200  # an instance ready
    path = channel.home / "run" / "egress-intruder.sock"
    hoard: dict = {}

    def run_hoard() -> None:
        hoard["response"] = channel.http.get("/intruder/hoard",
                                             params={"n": HOARD, "path": str(path)})

    attacker = threading.Thread(target=run_hoard)
    attacker.start()
    try:
        refused = channel.wait_for(lambda: [e for e in logs(channel, "intruder", stream="egress")
                                            if "too_many_connections" in e["line"]],
                                   "the refusal in the egress log", 60)
        with neighbour_watch(channel), httpx.Client(base_url=channel.url, timeout=10) as fresh:
            for _ in range(3):
                assert fresh.get("/neighbour/", headers={"connection": "close"}
                                 ).status_code == 200
                health = fresh.get("/_skiff/api/health", headers={
                    "connection": "close",
                    "authorization": channel.admin.headers["authorization"]})
                assert health.status_code == 200 and health.json()["status"] == "ok"
                got = fresh.get("/neighbour/fetch",
                                params={"url": f"http://127.0.0.1:{upstream}/"})
                assert got.status_code == 200, got.text
                assert "hello from the allowed upstream" in got.json()["body"]
    finally:
        with contextlib.suppress(httpx.HTTPError):
            channel.http.get("/intruder/release")
        attacker.join()
    assert hoard["response"].status_code == 200, hoard["response"].text
    assert hoard["response"].json()["held"] == HOARD  # accepted and answered, not stuck
    assert "SKIFF_EGRESS_MAX_CONNECTIONS_PER_APP" in refused[0]["line"]
    # rate-limited: thousands of refusals, a handful of lines
    lines = [e for e in logs(channel, "intruder", stream="egress")
             if "too_many_connections" in e["line"]]
    assert len(lines) < 100, len(lines)
    channel.wait_for(lambda: any("more refused" in e["line"] for e in logs(
        channel, "intruder", stream="egress")), "the count of folded refusals", 10)


# -- 12. destinations no manifest grants --------------------------------------------------------

def test_deploy_naming_forbidden_destinations_is_refused(channel, tmp_path):
    """Loopback, link-local, metadata, unspecified and the platform's own port, named in
    spec.egress without the operator's allowance: the deploy fails with a 422 naming each."""
    gateway = httpx.URL(channel.url).port
    app = tmp_path / "grabby"
    shutil.copytree(APPS / "neighbour", app)
    # (the manifest schema takes no IPv6 entries yet; the proxy's tests cover those classes)
    entries = [f"127.0.0.1:{gateway}", "127.0.0.1", "127.8.9.10:22", "169.254.169.254",
               "169.254.1.1:80", "0.0.0.0:80", "0.1.2.3", "10.9.8.7:5432"]
    (app / "skiff.yaml").write_text(
        (APPS / "neighbour" / "skiff.yaml").read_text().replace("neighbour", "grabby")
        .replace('["127.0.0.1:UPSTREAM"]', "[" + ", ".join(f'"{e}"' for e in entries) + "]"))
    r = channel.admin.post("/apps", content=pack(app),
                           headers={"content-type": "application/gzip"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "egress_rule_forbidden"
    problems = error["problems"]
    assert len(problems) == len(entries) - 1  # a private network address may be named
    for index, what in enumerate(["a loopback", "a loopback", "a loopback", "cloud metadata",
                                  "a link-local", "an unspecified", "an unspecified"]):
        assert problems[index].startswith(f"spec.egress[{index}]") and what in problems[index]
    assert "SKIFF_EGRESS_ALLOW=" in problems[0]
    assert channel.admin.get("/apps/grabby").status_code == 404


def test_names_resolving_to_loopback_are_checked_by_address(channel, upstream,
                                                            loopback_service):
    """spec.egress allows the name "localhost": the proxy resolves it, and its loopback
    addresses are refused (the audit line says why); the one address:port the operator
    allowed stays reachable, by address and by that name."""
    port = loopback_service.getsockname()[1]
    with neighbour_watch(channel):
        denied = channel.http.get("/intruder/fetch",
                                  params={"url": f"http://localhost:{port}/"}).json()
        ok = channel.http.get("/intruder/fetch",
                              params={"url": f"http://localhost:{upstream}/"}).json()
        direct = channel.http.get("/intruder/fetch",
                                  params={"url": f"http://127.0.0.1:{upstream}/"}).json()
    assert denied["status"] == 403 and "egress_forbidden_address" in denied["body"]
    with pytest.raises(BlockingIOError):
        loopback_service.accept()  # nothing reached the loopback service
    assert ok["status"] == 200 and "allowed upstream" in ok["body"]
    assert direct["status"] == 200
    lines = [e["line"] for e in logs(channel, "intruder", stream="egress")]
    assert any(f"localhost:{port} DENIED (forbidden_address)" in line
               and "is a loopback address" in line for line in lines), lines


def test_platform_alive_after_the_attacks(channel):
    assert channel.admin.get("/health").json()["status"] == "ok"
    assert channel.http.get("/neighbour/kv").status_code == 200
    assert channel.http.get("/intruder/fetch", params={"url": "http://x.invalid/"}
                            ).status_code == 200
