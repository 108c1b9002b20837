"""Supervision that trusts nothing an app-run process says: a pre-initialized
app's zygote that lies about pids, an init that takes memory or time or leaves a
daemon behind, instances that cut their socket or never exit or never read
their replies. Each attack runs with a neighbour app served throughout.

Needs root (as CI runs): cgroups, pidfds of other users' processes, uids."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SkiffServer
from tests.hostile.conftest import neighbour_watch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")

APPS = Path(__file__).parent / "instance_apps"
SERVED = ("neighbour", "escape", "hang", "noqueue", "unread")  # deployed at start


@pytest.fixture(scope="module")
def server(tmp_path_factory, envs_dir):
    src = tmp_path_factory.mktemp("apps")
    for name in SERVED:
        shutil.copytree(APPS / name, src / name)
    s = SkiffServer(tmp_path_factory.mktemp("home"), [src], envs_dir,
                    env={"SKIFF_INIT_TIMEOUT": "8", "SKIFF_STOP_GRACE": "2"})
    yield s
    s.stop()


def upload(server: SkiffServer, name: str, **replace: str) -> httpx.Response:
    """Deploy tests/hostile/instance_apps/NAME through the admin API."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted((APPS / name).iterdir()):
            data = f.read_bytes()
            for old, new in replace.items():
                data = data.replace(old.encode(), new.encode())
            info = tarfile.TarInfo(f.name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return server.admin.post("/apps", content=buf.getvalue(),
                             headers={"content-type": "application/gzip"})


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def named(comm: str) -> list[int]:
    """Live processes whose name (PR_SET_NAME) is ``comm``."""
    return [pid for pid in _pids() if _read(f"/proc/{pid}/comm").strip() == comm
            and "State:\tZ" not in _read(f"/proc/{pid}/status")]


def in_cgroups_of(app: str) -> list[int]:
    """Processes in a cgroup of ``app`` (its zygote's and instances' carry its name)."""
    return [pid for pid in _pids() if f":{app}@" in _read(f"/proc/{pid}/cgroup")]


def rss_mb(pid: int) -> float:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cgroup_dirs_of(pid: int) -> list[Path]:
    """The cgroup directories a platform with this pid made, in every hierarchy."""
    found = []
    for line in _read("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(","):
            if c in ("memory", "pids", "cpu", "freezer"):
                parent = Path("/sys/fs/cgroup", c, path.lstrip("/"))
                found += [d for d in parent.glob(f"skiff-{pid}-*") if d.is_dir()]
    return found


# -- 1. an app zygote that lies about the pid of its instance -------------------------

def test_zygote_naming_the_gateway_as_its_instance_is_stopped(server):
    """An init that patches the zygote's Forked reply to name the gateway (its
    getppid()) gets its zygote killed; the gateway survives, and no process of
    the app is left."""
    with neighbour_watch(server):
        r = upload(server, "liar-gateway")
        after = server.http.get("/liar-gateway/")
    assert r.status_code == 422 and r.json()["error"]["code"] == "zygote_untrusted", r.text
    assert after.status_code == 404
    assert server.proc.poll() is None, "the gateway was killed"
    server.wait_for(lambda: not in_cgroups_of("liar-gateway"), "the liar's processes to go")


def test_zygote_naming_a_root_process_as_its_instance_is_stopped(server):
    """The same lie naming a root process of the host (pid passed through
    spec.env): that process is never signalled."""
    victim = subprocess.Popen(["sleep", "300"])
    try:
        with neighbour_watch(server):
            r = upload(server, "liar-victim", VICTIM=str(victim.pid))
            after = server.http.get("/liar-victim/")
        assert r.status_code == 422 and r.json()["error"]["code"] == "zygote_untrusted", r.text
        assert after.status_code == 404
        time.sleep(0.5)  # a kill on timeout would have happened by now
        assert victim.poll() is None, "the platform killed a process it was lied to about"
        assert server.proc.poll() is None
        server.wait_for(lambda: not in_cgroups_of("liar-victim"), "the liar's processes to go")
    finally:
        victim.kill()
        victim.wait()


def test_zygote_whose_instances_skip_their_cgroup_is_stopped(server):
    """An init that patches the zygote so its instances do not join their cgroup
    is caught at the first instance (the kernel's list of the cgroup)."""
    with neighbour_watch(server):
        r = upload(server, "liar-cgroup")
    assert r.status_code == 422 and r.json()["error"]["code"] == "zygote_untrusted", r.text
    server.wait_for(lambda: not in_cgroups_of("liar-cgroup"), "the liar's processes to go")


# -- 2. an app zygote holds the app's limits ------------------------------------------

def test_init_over_its_memory_limit_fails_the_deploy(server):
    """An init taking 1 GiB against memoryMB: 64 is stopped by the kernel in the
    zygote's cgroup; the deploy says so."""
    with neighbour_watch(server):
        r = upload(server, "init-hog")
    assert r.status_code == 422 and r.json()["error"]["code"] == "memory_limit", r.text
    assert "64 MB" in r.json()["error"]["message"]
    server.wait_for(lambda: not in_cgroups_of("init-hog"), "the hog's processes to go")


def test_endless_init_times_out(server):
    """An init that never finishes is stopped at the init timeout (here
    SKIFF_INIT_TIMEOUT=8), its zygote with it."""
    with neighbour_watch(server):
        r = upload(server, "init-endless")
    assert r.status_code == 422 and r.json()["error"]["code"] == "init_timeout", r.text
    assert "SKIFF_INIT_TIMEOUT" in r.json()["error"]["message"]
    server.wait_for(lambda: not named("initendless"), "the endless init to be killed")


# -- 3. every instance stopped is killed whole, and holds its slot until then ----------

@pytest.mark.parametrize("how", ["close", "frame"])
def test_instance_cutting_its_socket_is_killed_and_holds_its_slot(server, how):
    """A handler that closes its instance socket (or writes a malformed frame)
    and keeps running is killed; with maxInstances: 1, no two run at once."""
    most, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            most[0] = max(most[0], len(named("skiffescape")))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    statuses: list[int] = []
    try:
        with neighbour_watch(server):
            threads = [threading.Thread(target=lambda: statuses.append(
                server.http.get("/escape/", params={"how": how}).status_code)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            server.wait_for(lambda: not named("skiffescape"), "the escaped instances to die")
    finally:
        stop.set()
        sampler.join()
    assert statuses == [502] * 4, statuses
    assert most[0] == 1, f"{most[0]} instances ran at once with maxInstances: 1"
    assert server.app("escape")["instances"] == 0


def test_a_process_that_keeps_moving_is_killed_with_its_instance(server):
    """A child that forks and exits in a loop (a new pid all the time) dies with
    its instance: the kill freezes the cgroup first, and repeats until it is empty."""
    with neighbour_watch(server):
        r = server.http.get("/escape/", params={"how": "runner"})
        server.wait_for(lambda: not named("skiffrunner") and not named("skiffescape"),
                        "the runner to be killed")
    assert r.status_code == 502, r.text


def test_instance_whose_shutdown_never_returns_is_killed(server):
    """An ASGI app whose lifespan shutdown hangs is killed after the grace period
    (here SKIFF_STOP_GRACE=2) once it goes idle."""
    with neighbour_watch(server):
        assert server.http.get("/hang/").status_code == 200
        assert named("skiffhang")
        server.wait_for(lambda: not named("skiffhang"), "the hanging instance to be killed")
    server.wait_for(lambda: server.app("hang")["instances"] == 0, "the slot to be free")


# -- 5. what the gateway holds for one instance is bounded ----------------------------

def test_unread_sdk_replies_do_not_grow_the_gateway(server):
    """2,500 kv.get calls for a 400 KiB value, replies never read: the gateway
    stops reading from that instance and its memory stays bounded."""
    gateway = server.proc.pid
    before = rss_mb(gateway)
    most, stop = [before], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            most[0] = max(most[0], rss_mb(gateway))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with neighbour_watch(server):
            r = server.http.get("/unread/")
    finally:
        stop.set()
        sampler.join()
    assert r.status_code == 504, r.text  # it never answers: its timeout stops it
    assert most[0] - before < 200, f"gateway RSS grew from {before:.0f} to {most[0]:.0f} MiB"
    assert server.proc.poll() is None


# -- 20. maxQueue: 0 still lets a request wait for its instance to start ---------------

def test_max_queue_zero_waits_for_the_instance_it_starts(server):
    """With no instance (scaled to zero) and maxQueue: 0, a request still gets one."""
    server.wait_for(lambda: server.app("noqueue")["instances"] == 0, "scale to zero")
    assert server.http.get("/noqueue/").status_code == 200


# -- 2/3. nothing an app started outlives the platform --------------------------------

def test_stop_kills_what_init_left_and_next_start_reaps_a_killed_platform(tmp_path, envs_dir):
    """A daemon (double fork + setsid) from a pre-initialized init dies with a
    graceful stop, and the platform's cgroups go. After a kill -9 of the
    platform, the next platform to start kills such leftovers and removes the
    dead platform's cgroups (and no other's)."""
    src = tmp_path / "apps"
    for name in ("neighbour", "init-daemon"):
        shutil.copytree(APPS / name, src / name)
    try:
        first = SkiffServer(tmp_path / "home1", [src], envs_dir)
        try:
            with neighbour_watch(first):
                first.wait_for(lambda: named("initdaemon"), "the daemon to start")
            assert cgroup_dirs_of(first.proc.pid)
        finally:
            first.stop()
        first.wait_for(lambda: not named("initdaemon"), "the daemon to die with the platform")
        assert not cgroup_dirs_of(first.proc.pid)

        second = SkiffServer(tmp_path / "home2", [src], envs_dir)
        daemon = second.wait_for(lambda: named("initdaemon"), "the daemon to start")
        second.stop(signal.SIGKILL)
        assert named("initdaemon") == daemon, "precondition: the daemon outlives a kill -9"
        assert cgroup_dirs_of(second.proc.pid)
        third = SkiffServer(tmp_path / "home3", [src / "neighbour"], envs_dir)
        try:
            third.wait_for(lambda: not named("initdaemon"), "the leftover daemon to be killed")
            assert not cgroup_dirs_of(second.proc.pid)
            assert third.http.get("/neighbour/").status_code == 200
        finally:
            third.stop()
    finally:
        for pid in named("initdaemon"):  # only if the test failed: ours, by name
            os.kill(pid, signal.SIGKILL)
