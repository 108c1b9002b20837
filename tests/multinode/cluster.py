"""Throwaway PostgreSQL clusters and haproxy for the multi-node tests, made with
.ci/postgres's recipe (initdb as the postgres user, trust auth on loopback,
fsync off): a test may stop and restart its own cluster without touching the
one SKIFF_TEST_DATABASE_URL names, which other tests share; and the nodes of
a cluster, each its own ``skiff up``."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import SkiffServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                   key=lambda p: int(Path(p).parent.name))
    if not found or os.geteuid() != 0:
        pytest.skip("needs root and Debian's postgresql (.ci/postgres start installs it)")
    return Path(found[-1])


class PgCluster:
    """A PostgreSQL cluster of its own on a fixed port: ``stop()`` and ``start()`` keep its data."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="skiff-multinode-pg."))
        shutil.chown(self.dir, "postgres")
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._pg("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres",
                 "-E", "UTF8", "--no-sync")
        self.start()

    def _pg(self, tool: str, *args: str) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / tool), *args],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "server.log"),
                 "-w", "-t", "60", "-o", f"-p {self.port} -k {self.dir} -c "
                 "listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", "start")

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already stopped
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def fresh_database(base_url: str) -> str:
    """A new, empty database on ``base_url``'s server (dropped by :func:`drop_database`)."""
    import psycopg

    name = f"skiff_mn_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base_url.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Haproxy:
    """``haproxy -f CONFIG`` in the foreground, on the port its config binds."""

    def __init__(self, config: Path, port: int) -> None:
        self.log = config.with_suffix(".log")
        exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(exe).exists():
            pytest.skip("no haproxy: apt-get install -y haproxy (.ci/postgres start does)")
        check = subprocess.run([exe, "-c", "-f", str(config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        with self.log.open("w") as out:  # a file: a full pipe would stall haproxy
            self.proc = subprocess.Popen([exe, "-db", "-f", str(config)], stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("haproxy did not listen")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Node(SkiffServer):
    """``skiff up`` as one node of a cluster: on a port fixed at first start, so a node
    killed and started again is the same haproxy server."""

    def __init__(self, name: str, home: Path, dirs: list[Path], envs: Path, env: dict,
                 port: int | None = None) -> None:
        self.name = name
        self.home = home
        self.port = port or free_port()
        self.lines: list[str] = []
        self._ready = threading.Event()
        full_env = {**os.environ, "SKIFF_ENVS_DIR": str(envs), "SKIFF_TICK_SECONDS": "0.1",
                    "SKIFF_NODE_NAME": name, **env}
        full_env.pop("SKIFF_ADMIN_TOKEN", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "skiff", "up", *map(str, dirs), "--port", str(self.port),
             "--home", str(home)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env)
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(180) or not any(ln.startswith("ready:") for ln in self.lines):
            self.stop()
            raise RuntimeError(f"node {name} did not start:\n" + "\n".join(self.lines))
        self.url = json.loads((home / "server.json").read_text())["url"]
        token = (home / "admin-token").read_text().strip()
        self.http = httpx.Client(base_url=self.url, timeout=60)
        self.admin = httpx.Client(base_url=self.url + "/_skiff/api", timeout=300,
                                  headers={"authorization": f"Bearer {token}"})
