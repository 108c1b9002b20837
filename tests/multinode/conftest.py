"""Three real nodes on one fresh database, behind haproxy configured by
``skiff lb haproxy``'s generator: shared by the tests of a module."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from skiff.cli.lb import haproxy_config
from skiff.governance.secrets import generate_master_key
from tests.multinode.cluster import Haproxy, Node, drop_database, free_port, fresh_database
from tests.postgres import pg_database, postgres_url  # noqa: F401 - pg_database: a fixture

APPS = Path(__file__).resolve().parent / "apps"
NODES = 3


class Cluster:
    """The nodes, haproxy in front of them, and clients of haproxy (data plane and
    admin API: every node has the same admin token)."""

    def __init__(self, root: Path, envs: Path, dirs: list[Path]) -> None:
        self.database = fresh_database(postgres_url())
        migrated = subprocess.run([sys.executable, "-m", "skiff", "migrate", "--database-url",
                                   self.database], capture_output=True, text=True, timeout=120)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        self.root, self.envs, self.dirs = root, envs, dirs
        self.token = secrets.token_urlsafe(24)
        # one secret store in the database, sealed under one key every node holds
        self.master_key = generate_master_key()
        self.nodes: list[Node] = []
        self.haproxy: Haproxy | None = None
        # one after the other: each deploys the same app dirs, and only the first
        # finds them new
        try:
            for i in range(1, NODES + 1):
                self.nodes.append(self._start(i))
            port = free_port()
            config = root / "haproxy.cfg"
            config.write_text(haproxy_config([n.url for n in self.nodes], f"127.0.0.1:{port}"))
            self.haproxy = Haproxy(config, port)
        except BaseException:
            self.close()
            raise
        self.http = httpx.Client(base_url=self.haproxy.url, timeout=60)
        self.admin = httpx.Client(base_url=self.haproxy.url + "/_skiff/api", timeout=120,
                                  headers={"authorization": f"Bearer {self.token}"})
        self.wait_for(lambda: len(self.nodes_answering()) == NODES, "haproxy to see every node")

    def _start(self, i: int, port: int | None = None, dirs: list[Path] | None = None) -> Node:
        home = self.root / f"node{i}"
        home.mkdir(exist_ok=True)
        (home / "admin-token").write_text(self.token)
        env = {"SKIFF_DATABASE_URL": self.database, "SKIFF_MASTER_KEY": self.master_key}
        if i > 1:
            # the host-wide uid registry stands for one host: nodes 2.. play other hosts
            # (node 1 allocates the apps' uids from the real one, free on this host)
            env["SKIFF_UID_REGISTRY"] = str(home / "uids.db")
        return Node(f"node{i}", home, self.dirs if dirs is None else dirs, self.envs, env,
                    port=port)

    def kill(self, i: int) -> None:
        """kill -9 node ``i`` (from 1)."""
        self.nodes[i - 1].stop(signal.SIGKILL)

    def restart(self, i: int) -> Node:
        """Start node ``i`` again on its port and home (no app dirs: it serves what the
        cluster has), and wait until haproxy sends it requests again."""
        old = self.nodes[i - 1]
        self.nodes[i - 1] = node = self._start(i, port=old.port, dirs=[])
        self.wait_for(lambda: old.name in self.nodes_answering(), f"haproxy to see {old.name}")
        return node

    def served_by(self, response: httpx.Response) -> str:
        """Which node answered: its x-skiff-node header (scaleout-sync), else the port
        the echo app saw."""
        node = response.headers.get("x-skiff-node")
        if node:
            return node
        port = int(response.json()["port"])
        return next(n.name for n in self.nodes if n.port == port)

    def nodes_answering(self, requests: int = 3 * NODES) -> set[str]:
        seen = set()
        for _ in range(requests):
            try:
                r = self.http.get("/echo/")
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                seen.add(self.served_by(r))
        return seen

    def wait_for(self, predicate: Callable, what: str, timeout: float = 60.0,
                 state: Callable | None = None):  # noqa: ANN201
        """Poll until ``predicate()`` is truthy (a readiness wait, not a timing assertion);
        ``state()`` says what there was instead, if it times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}"
                             + (f": {state()}" if state is not None else ""))

    def kv(self, app: str, key: str):  # noqa: ANN201
        r = self.admin.get(f"/apps/{app}/kv/{key}")
        return r.json()["value"] if r.status_code == 200 else None

    def kv_items(self, app: str, prefix: str) -> dict[str, object]:
        items, cursor = {}, None
        while True:
            page = self.admin.get(f"/apps/{app}/kv", params={
                "prefix": prefix, "limit": 1000, **({"cursor": cursor} if cursor else {})})
            page.raise_for_status()
            data = page.json()
            items.update({i["key"]: i["value"] for i in data["items"]})
            cursor = data["next_cursor"]
            if not cursor:
                return items

    def close(self) -> None:
        for client in ("http", "admin"):
            if hasattr(self, client):
                getattr(self, client).close()
        if self.haproxy is not None:
            self.haproxy.stop()
        for node in self.nodes:
            node.stop()
        drop_database(self.database)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path):
    c = Cluster(tmp_path_factory.mktemp("cluster"), envs_dir,
                [APPS / "echo", APPS / "tally", APPS / "ticker"])
    try:
        yield c
    finally:
        c.close()
