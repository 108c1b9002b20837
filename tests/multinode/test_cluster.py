"""One Skiff on three nodes: ``skiff up`` ×3 on one PostgreSQL database, behind
haproxy configured by ``skiff lb haproxy``. Requests reach every node; accepted
work survives a node's kill -9 (every message processed, the idempotent side
effect once); schedules fire once per period across the nodes; a deploy on one
node is live on all."""

from __future__ import annotations

import importlib.util
import inspect
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.multinode.conftest import APPS, NODES

EVENT = {"x-skiff-invocation-type": "Event"}


def _plane_keeps_shared_state() -> bool:
    """scaleout-state: the event plane takes a TriggerState (shared on PostgreSQL)
    instead of opening its own events.db."""
    from skiff.triggers import EventPlane

    return "db_path" not in inspect.signature(EventPlane.__init__).parameters


def _deploys_propagate() -> bool:
    """scaleout-sync: every node follows the registry (skiff.platform.follow)."""
    return importlib.util.find_spec("skiff.platform.follow") is not None


# -- (a) every node serves ---------------------------------------------------------------
def test_requests_through_haproxy_reach_every_node(cluster) -> None:
    """Requests to haproxy are spread over all three nodes (leastconn: equal load goes
    round robin), each answering the same app from the shared registry."""
    served = Counter(cluster.served_by(cluster.http.get("/echo/")) for _ in range(6 * NODES))
    assert set(served) == {n.name for n in cluster.nodes}, served
    health = [cluster.http.get("/_skiff/api/health") for _ in range(2 * NODES)]
    assert all(r.status_code == 200 for r in health)  # the check needs no token
    if "x-skiff-node" in health[0].headers:  # scaleout-sync names the node
        assert {r.headers["x-skiff-node"] for r in health} == {n.name for n in cluster.nodes}


# -- (d) a deploy on one node is live on all ---------------------------------------------
@pytest.mark.skipif(not _deploys_propagate(),
                    reason="needs scaleout-sync: deploys propagate to every node "
                           "(skiff.platform.follow, code bundles + NOTIFY)")
def test_deploy_on_one_node_is_live_on_all(cluster, tmp_path: Path) -> None:
    app = tmp_path / "echo"
    shutil.copytree(APPS / "echo", app)
    handler = app / "handler.py"
    handler.write_text(handler.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
    env = {**os.environ, "SKIFF_ADMIN_TOKEN": cluster.token}
    done = subprocess.run([sys.executable, "-m", "skiff", "deploy", str(app), "--url",
                           cluster.nodes[0].url], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    def every_node_on_v2() -> bool:
        versions: dict[str, set[str]] = {}
        for _ in range(4 * NODES):
            r = cluster.http.get("/echo/")
            assert r.status_code == 200, r.text
            versions.setdefault(cluster.served_by(r), set()).add(r.json()["version"])
        return len(versions) == NODES and all(v == {"v2"} for v in versions.values())

    cluster.wait_for(every_node_on_v2, "v2 on every node", timeout=60)


# -- (c) schedules fire once per period across the nodes ----------------------------------
@pytest.mark.slow  # rate(1 minute) is the shortest schedule: three periods take minutes
@pytest.mark.timeout(420)
@pytest.mark.skipif(not _plane_keeps_shared_state(),
                    reason="needs scaleout-state: schedule checkpoints on the shared storage "
                           "(the event plane still opens its own events.db per node)")
def test_schedule_fires_once_per_period_across_nodes(cluster) -> None:
    """ticker (rate(1 minute)) fires once per minute in the cluster, not once per node, and
    no period is missed while the node that fired last is killed."""
    def fires() -> dict[str, int]:
        return {k.removeprefix("fired:"): v for k, v in cluster.kv_items("ticker", "fired:")
                .items()}

    first = cluster.wait_for(fires, "a first fire", timeout=150)
    cluster.kill(1)  # whichever node fires, the others go on
    try:
        start = min(datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                    for t in first)
        cluster.wait_for(lambda: len(fires()) >= 4, "three more fires", timeout=300)
        seen = fires()
        times = sorted(datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                       for t in seen)
        assert all(v == 1 for v in seen.values()), seen  # once per period, not per node
        expected = [start + timedelta(minutes=i) for i in range(len(times))]
        assert times == expected, seen  # none missed while node1 was down
    finally:
        cluster.restart(1)


# -- (b) 2,000 accepted, a node killed mid-run: none lost, each booked once ----------------
ASYNC = 1_000
QUEUED = 1_000


def _accept(cluster, ids: list[str]) -> list[str]:
    """Accept each message through haproxy (async invocations for ``a*``, queue messages
    for ``q*``); a 502/503 (a node dying under the request) is retried with the same id,
    as a client would: the app is idempotent on it. Returns the ids accepted."""
    def one(client: httpx.Client, mid: str) -> str:
        for _ in range(5):
            if mid.startswith("a"):
                r = client.post("/tally/", json={"id": mid}, headers=EVENT)
            else:
                r = client.post("/_skiff/api/queues/tally-in/messages",
                                json={"body": {"id": mid}},
                                headers={"authorization": f"Bearer {cluster.token}"})
            if r.status_code == 202:
                return mid
            assert r.status_code in (502, 503), r.text
            time.sleep(0.2)
        raise AssertionError(f"{mid} not accepted: {r.status_code} {r.text}")

    with httpx.Client(base_url=cluster.haproxy.url, timeout=60) as client, \
            ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda mid: one(client, mid), ids))


@pytest.mark.timeout(400)
def test_kill_9_of_a_node_mid_run_loses_nothing_and_books_once(cluster) -> None:
    """2,000 messages (half async invocations, half queue messages) accepted through
    haproxy; mid-run, while every consumer of every node waits inside its idempotent run,
    node 2 is killed -9 and the rest are accepted through haproxy meanwhile. Every
    message is then processed (seen at least once) and booked exactly once."""
    messages = [f"a{i}" for i in range(ASYNC)] + [f"q{i}" for i in range(QUEUED)]
    messages = messages[::2] + messages[1::2]  # both kinds in both halves
    first, held, rest = messages[:600], messages[600:1000], messages[1000:]
    accepted = _accept(cluster, first)  # processed as they come
    cluster.admin.put("/apps/tally/kv/hold", content=b"true").raise_for_status()
    accepted += _accept(cluster, held)  # a backlog the held consumers leave waiting
    # every instance of every node (maxInstances 2 each) waits in its run, before its
    # side effect: node 2 dies holding leased messages and in-progress records
    cluster.wait_for(lambda: (cluster.kv("tally", "held") or 0) >= 2 * NODES,
                     "every consumer held", timeout=120,
                     state=lambda: {k: cluster.kv("tally", k) for k in ("held", "effects")})
    cluster.kill(2)
    try:
        cluster.admin.put("/apps/tally/kv/hold", content=b"false").raise_for_status()
        accepted += _accept(cluster, rest)
        assert sorted(accepted) == sorted(messages)
        # node 2's leases come back after their visibility timeout, on the other nodes
        cluster.wait_for(lambda: (cluster.kv("tally", "effects") or 0) >= len(messages),
                         "every message booked", timeout=240,
                         state=lambda: (cluster.kv("tally", "effects"),
                                        [q for q in cluster.admin.get("/queues").json()
                                         if "tally" in q["name"]]))
        booked = cluster.kv_items("tally", "booked:")
        seen = cluster.kv_items("tally", "seen:")
        assert set(booked) == {f"booked:{m}" for m in messages}  # none lost
        assert {k for k, v in booked.items() if v != 1} == set()  # none booked twice
        assert cluster.kv("tally", "effects") == len(messages)
        assert set(seen) == {f"seen:{m}" for m in messages}
        assert any(v > 1 for v in seen.values())  # node 2's were delivered again
    finally:
        cluster.restart(2)
