"""Each instance gets a minimal root of its own: the interpreter, the system
libraries, a small /etc, a few device nodes, its code, private /tmp, /var/tmp
and /dev/shm, a fresh /proc, and nothing else of the host.

Needs root (as CI runs): mount namespaces and pivot_root are kernel features."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

import skiff
from tests.conftest import ROOT, SkiffServer
from tests.hostile.conftest import APPS, neighbour_watch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")

HERE = Path(__file__).parent / "filesystem_apps"
SYSTEM = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc",
          "tmp", "var"}
DEVICES = {"null", "zero", "full", "random", "urandom", "tty"}


@pytest.fixture(scope="module")
def fs(tmp_path_factory, envs_dir):
    src = tmp_path_factory.mktemp("apps")
    shutil.copytree(HERE / "deps", src / "deps")
    shutil.copytree(APPS / "neighbour", src / "neighbour")
    for name, extra in [("prober", ""), ("other", ""), ("pre", "  scaling: {preinit: true}\n")]:
        shutil.copytree(HERE / "prober", src / name)
        manifest = src / name / "skiff.yaml"
        manifest.write_text(manifest.read_text().replace("name: prober", f"name: {name}") + extra)
    server = SkiffServer(tmp_path_factory.mktemp("home"), [src], envs_dir)
    server.envs_dir = envs_dir
    yield server
    server.stop()


def probe(server: SkiffServer, app: str, what: str, **params) -> dict:
    r = server.http.get(f"/{app}{what}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _top(path: str | Path) -> str:
    return Path(path).parts[1]


def test_root_lists_only_the_minimal_set(fs):
    """`/` holds the system directories and the first component of each path the
    interpreter, skiff and the app's code live under; nothing else of the host."""
    needed = {_top(p) for p in (sys.prefix, sys.base_prefix, os.path.realpath(sys.base_prefix),
                                Path(skiff.__file__).resolve(), fs.home, fs.envs_dir)}
    for app in ("prober", "pre"):
        with neighbour_watch(fs):
            listing = probe(fs, app, "/ls", path="/")
        assert listing["ok"], listing
        # an app zygote's instances attach themselves to their cgroups: it has
        # this platform's cgroup directories (and only those) under /sys
        extra = {"sys"} if app == "pre" else set()
        assert set(listing["result"]) <= SYSTEM | needed | extra, listing["result"]
        for host_only in ({"home", "opt", "srv", "mnt", "media", "boot", "sys", "run"}
                          - needed - extra):
            assert host_only not in listing["result"]


def _host_secrets(fs: SkiffServer) -> list[Path]:
    """Host paths that exist here and that no app may see."""
    other = fs.home / "revisions" / "other" / fs.app("other")["revision"]
    paths = [Path(p) for p in ("/home", "/opt", "/srv", "/var/lib", "/mnt", "/root/.bashrc",
                               "/etc/shadow", "/sys/kernel", "/sys/fs/cgroup/pids/tasks",
                               "/run/lock")]
    paths += [fs.home / "skiff.db", fs.home / "admin-token", other / "handler.py", other]
    # the checkout skiff runs from: its siblings of src/ and .venv (tests, .git...)
    paths += [ROOT / name for name in os.listdir(ROOT) if name not in {"src", ".venv"}]
    # other projects next to it (the checkout's parent's other entries)
    paths += [ROOT.parent / name for name in os.listdir(ROOT.parent) if name != ROOT.name]
    return [p for p in paths if p.exists() and not str(sys.prefix).startswith(str(p))]


@pytest.mark.parametrize("app", ["prober", "pre"])
def test_host_files_are_not_visible(fs, app):
    """Other projects, /home, /opt, /srv, /var/lib, the skiff checkout's other
    files, the platform's state and other apps' code do not exist for the app."""
    secrets = _host_secrets(fs)
    assert secrets, "nothing to check: this host has none of the paths"
    with neighbour_watch(fs):
        seen = {str(p): probe(fs, app, "/exists", path=str(p))["result"] for p in secrets}
    assert not [p for p, exists in seen.items() if exists], seen


def test_skiff_package_and_its_parent(fs):
    """Skiff's own package is there (the runtime needs it); beside it, nothing."""
    pkg = Path(skiff.__file__).resolve().parent
    listing = probe(fs, "prober", "/ls", path=str(pkg.parent))
    assert listing["ok"], listing
    if not str(pkg).startswith(sys.prefix):  # an editable checkout: only the package
        assert listing["result"] == ["skiff"]


@pytest.mark.parametrize("app", ["prober", "pre"])
def test_shared_writable_directories_are_private(fs, app):
    """/tmp, /var/tmp and /dev/shm are writable and private: another app (another
    uid) cannot read what was put there, and the host never sees it; /run/lock is
    not there at all."""
    token = uuid.uuid4().hex
    with neighbour_watch(fs):
        for d in ("/tmp", "/var/tmp", "/dev/shm"):
            wrote = probe(fs, app, "/write", path=f"{d}/drop-{token}", data=token)
            assert wrote["ok"], wrote
            assert probe(fs, app, "/read", path=f"{d}/drop-{token}")["result"] == token
        assert not probe(fs, app, "/write", path=f"/run/lock/drop-{token}", data=token)["ok"]
        for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock"):
            read = probe(fs, "other", "/read", path=f"{d}/drop-{token}")
            assert not read["ok"], (d, read)
            assert not Path(f"{d}/drop-{token}").exists()


@pytest.mark.parametrize("app", ["prober", "pre"])
def test_no_descriptor_leads_out_of_the_root(fs, app):
    """Building the root opens host paths; none of them is left open for the app."""
    fds = probe(fs, app, "/dir-fds")
    assert fds["ok"], fds
    assert fds["result"] == []


def test_dev_has_only_the_allowed_nodes(fs):
    """/dev holds null, zero, full, random, urandom, tty, shm and the fd links."""
    listing = probe(fs, "prober", "/ls", path="/dev")["result"]
    allowed = DEVICES | {"shm", "fd", "stdin", "stdout", "stderr"}
    assert set(listing) <= allowed, listing
    assert {d for d in DEVICES if os.path.exists(f"/dev/{d}")} <= set(listing)
    assert probe(fs, "prober", "/write", path="/dev/null", data="x")["ok"]
    assert len(probe(fs, "prober", "/read", path="/dev/urandom")["result"]) == 200


def test_passwd_names_the_app_uid_and_certs_are_readable(fs):
    """Python, SSL and NSS find what they need in the small /etc."""
    user = probe(fs, "prober", "/user")
    assert user["ok"], user
    assert user["result"]["uid"] >= 100_000
    assert user["result"]["name"] == "app"
    certs = probe(fs, "prober", "/certs")
    assert certs["ok"], certs
    assert certs["result"]["x509_ca"] > 0 and certs["result"]["pem"]


def test_app_with_requirements_runs_from_its_environment(fs):
    """An app's own dependencies (its environment) are in its root."""
    with neighbour_watch(fs):
        r = fs.http.get("/deps/")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["signed"].startswith("hi.")
    assert body["module"].startswith(str(fs.envs_dir))


def test_platform_still_healthy(fs):
    assert fs.admin.get("/health").json()["status"] == "ok"
    assert fs.http.get("/neighbour/").status_code == 200
