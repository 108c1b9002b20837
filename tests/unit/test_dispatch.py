"""The event plane's dispatcher (in-process, MemoryBroker): idle queues hold no task and
no timer; a send, a delay or a retry wakes only its queue; a queue never runs more
batches at once than its consumer's concurrency."""

from __future__ import annotations

import asyncio
import time

from skiff.bus import MemoryBroker
from skiff.instance import protocol as p
from skiff.manifest import parse_manifest
from skiff.store.trigger_state import SQLiteTriggerState
from skiff.triggers import EventPlane

N = 50


def called(args: tuple) -> tuple[str, str, str]:
    """(app, trigger, request id) of an invoke call: ``(app, msg, trigger)``, or one
    ``Invocation`` (the platform boundary on main)."""
    if len(args) == 1:
        inv = args[0]
        return inv.app, inv.trigger, inv.request.id
    app, msg, trigger = args
    return app, trigger, msg.id


def manifest(name: str, max_instances: int = 2):
    return parse_manifest({
        "apiVersion": "skiff.dev/v1", "kind": "MicroApp", "metadata": {"name": name},
        "spec": {"handler": "app:handler", "scaling": {"maxInstances": max_instances},
                 "triggers": [{"queue": f"{name}-jobs"}, {"schedule": "rate(1 day)"},
                              {"event": {"source": ["shop"]}}]}})


async def until(predicate, what: str, timeout: float = 5.0) -> None:  # noqa: ANN001
    """Poll until ``predicate()``: a readiness wait, not a timing assertion."""
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def settle(plane: EventPlane) -> None:
    """Until no drain runs."""
    await asyncio.sleep(0.05)
    await until(lambda: not plane.dispatcher.active(), "every drain to end")


def test_idle_apps_hold_no_task_and_no_timer(tmp_path):
    """50 wired apps (async, a queue trigger, a rule and a schedule each) and no traffic:
    once the first look at each queue is done, no drain task and no timer is left, and
    a send to one queue runs only that queue's handler."""
    seen: list[tuple[str, str]] = []

    async def invoke(*args):  # noqa: ANN002, ANN202
        app, trigger, rid = called(args)
        seen.append((app, trigger))
        return p.Response(id=rid, body=b"{}")

    async def main() -> None:
        plane = EventPlane(MemoryBroker(), SQLiteTriggerState(tmp_path / "events.db"),
                           invoke, log=lambda *a: None)
        before = len(asyncio.all_tasks())
        for i in range(N):
            plane.wire(manifest(f"app-{i}"))
        await settle(plane)
        assert (len(asyncio.all_tasks()), plane.dispatcher.timers()) == (before, 0)
        plane.send("app-7-jobs", b'{"n": 1}')
        plane.enqueue_invocation("app-3", p.Event(id="inv-1", payload=b"{}"))
        plane.publish({"specversion": "1.0", "id": "e1", "source": "shop", "type": "order"})
        await until(lambda: len(seen) >= 2 + N, "every invocation")
        await settle(plane)
        assert ("app-7", "queue") in seen and ("app-3", "event") in seen
        assert len(seen) == 2 + N  # each rule once, the queue and the async invocation once
        assert (len(asyncio.all_tasks()), plane.dispatcher.timers()) == (before, 0)
        await plane.stop()

    asyncio.run(main())


def test_a_delayed_message_arms_one_timer_and_is_delivered(tmp_path):
    """A delayed message leaves its queue one timer and no task until it is visible (on a
    fake clock: a message 30 s away); a short delay is then delivered by the timer alone,
    which leaves nothing behind."""
    got: list[bool] = []
    clock = Clock()

    async def invoke(*args):  # noqa: ANN002, ANN202
        got.append(True)
        return p.Response(id=called(args)[2], body=b"{}")

    async def main() -> None:
        broker = MemoryBroker(clock=clock)
        plane = EventPlane(broker, SQLiteTriggerState(tmp_path / "events.db"), invoke,
                           log=lambda *a: None)
        before = len(asyncio.all_tasks())
        plane.wire(manifest("late"))
        await settle(plane)
        plane.send("late-jobs", b"{}", delay=30)
        await settle(plane)
        assert (got, plane.dispatcher.timers(), len(asyncio.all_tasks())) == ([], 1, before)
        plane.unwire("late")
        broker.purge("late-jobs")
        clock.real = True
        plane.wire(manifest("late"))
        await settle(plane)
        plane.send("late-jobs", b"{}", delay=0.2)
        await until(lambda: got, "the delayed message")
        await settle(plane)
        assert (got, plane.dispatcher.timers(), len(asyncio.all_tasks())) == ([True], 0, before)
        await plane.stop()

    asyncio.run(main())


class Clock:
    """A clock that stands still until ``real`` is set."""

    def __init__(self) -> None:
        self.real = False
        self.now = time.time()

    def __call__(self) -> float:
        return time.time() if self.real else self.now


def test_concurrency_is_the_consumer_count_of_before(tmp_path):
    """Async work of an app with maxInstances 8 runs 4 invocations at once and no more (the 4
    consumers it had); its queue trigger runs one batch at a time."""
    running: dict[str, int] = {"event": 0, "queue": 0}
    peak: dict[str, int] = {"event": 0, "queue": 0}
    gate = asyncio.Event()

    async def invoke(*args):  # noqa: ANN002, ANN202
        _, trigger, rid = called(args)
        running[trigger] += 1
        peak[trigger] = max(peak[trigger], running[trigger])
        await gate.wait()
        running[trigger] -= 1
        return p.Response(id=rid, body=b"{}")

    async def main() -> None:
        broker = MemoryBroker()
        plane = EventPlane(broker, SQLiteTriggerState(tmp_path / "events.db"), invoke,
                           log=lambda *a: None)
        plane.wire(manifest("busy", max_instances=8))
        await settle(plane)
        for i in range(10):  # one at a time, as callers do: each wakes the queue
            plane.enqueue_invocation("busy", p.Event(id=f"inv-{i}", payload=b"{}"))
            plane.send("busy-jobs", b"{}")
            await asyncio.sleep(0.01)
        await until(lambda: running["event"] >= 4 and running["queue"] >= 1,
                    "4 async invocations and a batch running")
        await asyncio.sleep(0.1)  # room for a fifth, were there one
        assert (running, peak) == ({"event": 4, "queue": 1}, {"event": 4, "queue": 1})
        gate.set()
        await until(lambda: not any(q.visible or q.in_flight for q in broker.queues()),
                    "the queues to drain")
        await settle(plane)
        assert [plane.status(f"inv-{i}")["status"] for i in range(10)] == ["succeeded"] * 10
        assert peak == {"event": 4, "queue": 1}
        await plane.stop()

    asyncio.run(main())
