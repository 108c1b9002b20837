"""Hostile apps: each attack fails or gets its instance killed, the response
says why, and a well-behaved neighbour keeps answering throughout.

Needs root (as CI runs): the sandbox layers are kernel features."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.conftest import SkiffServer
from tests.hostile.conftest import neighbour_watch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")


def attack(skiff: SkiffServer, route: str, **params) -> httpx.Response:
    with neighbour_watch(skiff):
        return skiff.http.get(f"/attacker{route}", params=params)


def blocked(skiff: SkiffServer, route: str, **params) -> str:
    r = attack(skiff, route, **params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["blocked"] is True, f"{route} was not blocked: {body}"
    return body["error"]


def test_runs_as_its_own_unprivileged_user(skiff):
    """The instance runs as a uid of its own, with a private /tmp and the proxy set."""
    info = skiff.http.get("/attacker/whoami").json()
    assert info["uid"] >= 100_000
    assert info["proxy"].startswith("http://127.0.0.1:")
    assert "skiff.db" not in str(info["tmp"])


def test_platform_environment_does_not_reach_instances(skiff):
    """The operator's environment (here a canary variable) is not in the app's."""
    env = skiff.http.get("/attacker/whoami").json()["env"]
    assert "OPERATOR_CANARY" not in env
    assert not [k for k in env if k.startswith("SKIFF_ADMIN") or k == "SKIFF_MASTER_KEY"]


@pytest.mark.parametrize("target", ["/etc/shadow", "{home}/skiff.db", "{home}/secrets.db",
                                    "{home}/master.key", "{home}/admin-token",
                                    "{neighbour_code}/handler.py", "/root/.bashrc"])
def test_cannot_read_platform_state_or_other_apps(skiff, target):
    """Host secrets, the platform's files and another app's code are out of reach."""
    rev = skiff.app("neighbour")["revision"]
    path = target.format(home=skiff.home,
                         neighbour_code=skiff.home / "revisions" / "neighbour" / rev)
    error = blocked(skiff, "/read", path=path)
    assert "Error" in error


@pytest.mark.parametrize("path", ["/etc/passwd", "/usr/lib/pwned", "{code}/handler.py"])
def test_cannot_write_outside_tmp(skiff, path):
    """The app's code is read-only and the rest of the system is not its own."""
    rev = skiff.app("attacker")["revision"]
    error = blocked(skiff, "/write",
                    path=path.format(code=skiff.home / "revisions" / "attacker" / rev))
    assert "PermissionError" in error or "Read-only" in error or "OSError" in error


def test_filling_tmp_stops_at_its_size(skiff):
    """/tmp is private and size-limited: filling it ends with 'no space left'."""
    error = blocked(skiff, "/fill-tmp")
    assert "No space left" in error


def test_fork_bomb_hits_the_pids_limit(skiff):
    """A fork bomb stops at the instance's pids limit."""
    error = blocked(skiff, "/fork-bomb")
    assert "Resource temporarily unavailable" in error or "BlockingIOError" in error


def test_cannot_kill_or_ptrace_the_gateway(skiff):
    """The gateway is invisible from the instance's pid namespace; ptrace is refused."""
    gateway = skiff.proc.pid
    assert "ProcessLookupError" in blocked(skiff, "/kill", pid=gateway)
    assert "Operation not permitted" in blocked(skiff, "/ptrace", pid=gateway)
    visible = skiff.http.get("/attacker/processes").json()
    assert gateway not in eval(visible["result"])  # noqa: S307 - a list of ints we made
    assert skiff.http.get("/neighbour/").status_code == 200


@pytest.mark.parametrize("path", ["/mount", "/unshare", "/setuid", "/raw-socket"])
def test_privileged_operations_are_refused(skiff, path):
    """mount, namespaces, setuid(0) and raw sockets are refused."""
    error = blocked(skiff, path)
    assert "Operation not permitted" in error or "PermissionError" in error


def test_cannot_reach_the_admin_api_or_host_ports(skiff):
    """The instance has only its own loopback: the gateway's port is not there."""
    port = httpx.URL(skiff.url).port
    error = blocked(skiff, "/connect", host="127.0.0.1", port=port)
    assert "ConnectionRefused" in error or "unreachable" in error


def test_egress_only_to_allowed_hosts_through_the_proxy(skiff, upstream):
    """The allowed upstream is reachable through the proxy; any other host is denied
    with the rule to add, and every attempt is logged."""
    ok = skiff.http.get("/attacker/fetch", params={"url": f"http://127.0.0.1:{upstream}/"}).json()
    assert ok["blocked"] is False
    assert "hello from the allowed upstream" in ok["result"]
    error = blocked(skiff, "/fetch", url="http://api.not-allowed.test/")
    assert "403" in error
    direct = blocked(skiff, "/connect", host="10.255.255.1", port=80)
    assert "unreachable" in direct or "Errno" in direct
    logs = skiff.admin.get("/apps/attacker/logs", params={"stream": "egress"}).json()
    lines = [entry["line"] for entry in logs]
    assert any(f"127.0.0.1:{upstream} allowed" in line for line in lines)
    assert any("api.not-allowed.test:80 DENIED" in line and 'add "api.not-allowed.test' in line
               for line in lines)


def _running_in(code_dir: str) -> list[int]:
    """Pids of processes working in ``code_dir`` (an app's instances) that are on a
    CPU (state R) right now."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        state = next(line for line in status.splitlines() if line.startswith("State:"))
        if cwd == code_dir and state.split()[1] == "R":
            out.append(int(entry))
    return out


def test_cpu_spin_and_sleep_are_stopped_by_the_timeout(skiff):
    """Spinning or sleeping past the timeout: 504 and the instance is killed, every
    process of it (nothing of the app keeps spinning afterwards)."""
    code_dir = skiff.http.get("/attacker/whoami").json()["cwd"]
    for path in ("/spin", "/sleep"):
        r = attack(skiff, path)
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "timeout"
    skiff.wait_for(lambda: not _running_in(code_dir), "the spinning instance to be gone", 10)


def test_memory_hog_is_killed(skiff):
    """Allocating past memoryMB kills the instance; the 502 says the limit was hit."""
    r = attack(skiff, "/hog")
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "memory_limit"


def test_response_flood_is_refused(skiff):
    """A response bigger than the gateway takes is refused and the instance stopped;
    the gateway never buffers it."""
    r = attack(skiff, "/flood")
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "response_too_large"


def test_output_flood_is_rate_limited(skiff):
    """An app printing in a loop gets its output capped per second; the drop is logged."""
    r = attack(skiff, "/shout")
    assert r.status_code == 200
    rid = r.headers["x-skiff-request-id"]
    logs = skiff.admin.get("/apps/attacker/logs", params={"limit": 5000}).json()
    spam = [e for e in logs if e["request_id"] == rid and e["line"].startswith("spam")]
    assert 0 < len(spam) <= 2000
    skiff.wait_for(lambda: any("dropped" in e["line"] for e in skiff.admin.get(
        "/apps/attacker/logs", params={"stream": "platform", "limit": 5000}).json()),
        "the drop notice", 10)


def test_platform_still_healthy_after_the_attacks(skiff):
    """After everything above, the platform and both apps still answer."""
    assert skiff.admin.get("/health").json()["status"] == "ok"
    assert skiff.http.get("/neighbour/").status_code == 200
    assert skiff.http.get("/attacker/whoami").status_code == 200
