"""Two event planes on one PostgreSQL database (two nodes, in-process, each with its own
connections): each schedule fire is enqueued by one of them, none is lost while one is
stopped or dies mid-claim, and an async invocation's status reads the same from both."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from skiff.errors import TooManyRequests
from skiff.instance import protocol as p
from skiff.manifest import parse_manifest
from skiff.triggers import EventPlane
from tests.postgres import pg_database  # noqa: F401 - a fixture

T0 = 1_800_000_020.0  # 20 s past a minute boundary (1_800_000_000 is one)
MINUTE = 60.0


def manifest(name: str, triggers: list | None = None):
    return parse_manifest({
        "apiVersion": "skiff.dev/v1", "kind": "MicroApp", "metadata": {"name": name},
        "spec": {"handler": "app:handler", "triggers": triggers or []}})


async def ok(inv):  # noqa: ANN001, ANN201 - the plane hands over one Invocation
    return p.Response(id=inv.request.id, body=b'"ok"')


@pytest.fixture
def nodes(pg_database) -> Iterator[list]:  # noqa: F811 - the fixture above
    """Two PostgresDatabases (pools) on the test's schema: one per node."""
    from skiff.store.postgres import PostgresDatabase

    with pg_database.connection() as conn:
        schema = conn.execute("SHOW search_path").fetchone()[0]
    other = PostgresDatabase(pg_database.url, pool_size=4, options=f"-c search_path={schema}")
    yield [pg_database, other]
    other.close()


def plane(db, *, listen: bool = False, max_pending: int = 10_000) -> EventPlane:
    from skiff.bus.postgres import PostgresBroker
    from skiff.store.trigger_state_postgres import PostgresTriggerState

    return EventPlane(PostgresBroker(db, listen=listen), PostgresTriggerState(db), ok,
                      log=lambda *a: None, max_pending_per_app=max_pending)


class Died(Exception):
    pass


def record(node: EventPlane, name: str, enqueued: list[tuple[str, str]]) -> None:
    """Count the fires ``node`` enqueues; ``node.dies`` makes its next enqueue fail
    (the node dies after its claim, before the fire reached the queue)."""
    real = node.enqueue_invocation
    node.dies = False

    def enqueue(app, msg, traceparent=None):  # noqa: ANN001, ANN202
        if node.dies:
            node.dies = False
            raise Died
        time.sleep(0.05)  # a slow enqueue: room for the other node to claim meanwhile
        out = real(app, msg, traceparent)
        enqueued.append((name, msg.id))
        return out

    node.enqueue_invocation = enqueue


def test_each_fire_is_enqueued_once_by_one_of_two_nodes(nodes):
    """Both nodes tick at every fire (at once, from two threads), then only one, then
    only the other, then one whose claim dies mid-way: every minute's fire is enqueued
    exactly once, none is lost; after both were down, catchUp: one still runs only the
    latest missed fire."""
    enqueued: list[tuple[str, str]] = []

    async def main() -> None:
        a, b = plane(nodes[0]), plane(nodes[1])
        for node, name in ((a, "a"), (b, "b")):
            record(node, name, enqueued)
            node.wire(manifest("cron", [{"schedule": "rate(1 minute)"}]))

        def tick(*due: tuple[EventPlane, float]) -> None:
            """Each node's fire_due_schedules at its own clock, all at once."""
            start = threading.Barrier(len(due))

            def run(node: EventPlane, now: float) -> None:
                start.wait()
                node.fire_due_schedules(now)

            threads = [threading.Thread(target=run, args=d) for d in due]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)

        tick((a, T0), (b, T0 + 0.1))  # first sight: nothing fires
        for k in range(1, 4):  # both nodes, their clocks a little apart
            tick((a, T0 + k * MINUTE + 0.3), (b, T0 + k * MINUTE + 0.2))
        for k in range(4, 6):  # b is down
            tick((a, T0 + k * MINUTE))
        for k in range(6, 8):  # a is down
            tick((b, T0 + k * MINUTE))
        a.dies = True  # a claims minute 8 and dies before enqueuing: b, after it, fires
        with pytest.raises(Died):
            a.fire_due_schedules(T0 + 8 * MINUTE)
        tick((b, T0 + 8 * MINUTE + 1))
        tick((a, T0 + 11 * MINUTE), (b, T0 + 11 * MINUTE))  # both were down for 9 and 10
        for node in (a, b):
            await node.stop()

    asyncio.run(main())
    ids = [fire_id for _, fire_id in enqueued]
    minutes = [*range(1, 9), 11]
    assert sorted(ids) == sorted(f"sched-cron-0-{1_800_000_000 + k * 60}" for k in minutes)
    assert len(set(ids)) == len(ids)
    assert {name for name, _ in enqueued} == {"a", "b"}


def test_an_async_invocation_accepted_on_one_node_and_run_on_the_other(nodes):
    """Node a accepts; node b (the one consuming the app's queue, woken by a's commit)
    runs it; its status reads the same from both, and a's bound of pending invocations
    counts what b settled."""

    async def main() -> None:
        a = plane(nodes[0], listen=True, max_pending=1)
        b = plane(nodes[1], listen=True)
        b.wire(manifest("shop"))
        assert b.broker.listening.wait(10)
        a.enqueue_invocation("shop", p.Event(id="inv-1", payload=b"{}"))
        assert b.status("inv-1")["status"] == "queued"
        with pytest.raises(TooManyRequests):
            a.enqueue_invocation("shop", p.Event(id="inv-2", payload=b"{}"))
        for _ in range(1000):
            if a.status("inv-1")["status"] == "succeeded":
                break
            await asyncio.sleep(0.01)
        for node in (a, b):
            got = node.status("inv-1")
            assert (got["status"], got["status_code"], got["result"]) == ("succeeded", 200, "ok")
        a.enqueue_invocation("shop", p.Event(id="inv-2", payload=b"{}"))
        for node in (a, b):
            await node.stop()

    asyncio.run(main())
