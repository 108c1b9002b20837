"""Schedule fires across restarts: none missed, none doubled (in-process, fake clock)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import msgspec
import pytest

from skiff.bus import MemoryBroker
from skiff.instance import protocol as p
from skiff.manifest import parse_manifest
from skiff.store.trigger_state import SQLiteTriggerState
from skiff.triggers import EventPlane
from skiff.triggers.plane import async_queue

T0 = 1_800_000_020.0  # 20 s past a minute boundary


def manifest(catch_up: str = "one"):
    return parse_manifest({
        "apiVersion": "skiff.dev/v1", "kind": "MicroApp", "metadata": {"name": "cron-app"},
        "spec": {"handler": "app:handler",
                 "triggers": [{"schedule": "rate(1 minute)", "catchUp": catch_up}]}})


async def _noop(app, msg, trigger):  # noqa: ANN001, ANN202
    return p.Response(id=msg.id)


class Crash(Exception):
    pass


class CrashingState(SQLiteTriggerState):
    """Dies once at the end of a claim (``crash``: after the fires were enqueued, before
    the checkpoint was written), or fails once to claim (``unavailable``)."""

    crash = unavailable = False

    @contextlib.contextmanager
    def claim_schedule(self, app, trigger):  # noqa: ANN001, ANN201
        if self.unavailable:
            self.unavailable = False
            raise Crash("the database is away")
        with super().claim_schedule(app, trigger) as claim:
            yield claim
            if self.crash:
                self.crash = False
                raise Crash


def run(tmp_path, steps, catch_up="one"):
    """Wire the app, then call fire_due_schedules at each time in ``steps`` (a
    ('fire', t) or ('crash', t) list: a crash after enqueuing, before the checkpoint);
    returns the ids queued, in order."""
    broker = MemoryBroker()

    async def main() -> list[str]:
        state = CrashingState(tmp_path / "events.db")
        plane = EventPlane(broker, state, _noop, log=lambda *a: None)
        plane.wire(manifest(catch_up))
        for action, t in steps:
            state.crash = action == "crash"
            try:
                plane.fire_due_schedules(t)
            except Crash:
                assert state.checkpoint("cron-app", "0:rate(1 minute)@UTC") < t
        ids = [m.message_id for m in broker.peek(async_queue("cron-app"), 100)]
        plane.unwire("cron-app")
        return ids

    return asyncio.run(main()), broker


def test_first_sight_does_not_backfill(tmp_path):
    """A new schedule starts now: nothing from before it existed runs."""
    ids, _ = run(tmp_path, [("fire", T0)])
    assert ids == []


def test_each_boundary_fires_once(tmp_path):
    """Ticking past two minute boundaries fires twice, with the scheduled event."""
    ids, broker = run(tmp_path, [("fire", T0), ("fire", T0 + 30), ("fire", T0 + 61),
                                 ("fire", T0 + 62), ("fire", T0 + 121)])
    assert len(ids) == 2
    msg = broker.peek(async_queue("cron-app"), 1)[0]  # the queued async invocation
    event = json.loads(msgspec.msgpack.decode(msg.body, type=p.Event).payload)
    assert event["detail-type"] == "Scheduled Event"


def test_crash_between_enqueue_and_checkpoint_does_not_double(tmp_path):
    """The same fire enqueued again after a crash has the same id: queued once."""
    ids, _ = run(tmp_path, [("fire", T0), ("crash", T0 + 61), ("fire", T0 + 62)])
    assert len(ids) == 1


def test_fires_missed_while_down_run_once_by_default(tmp_path):
    """Ten minutes down: the missed fires run once at start (catchUp: one)."""
    ids, _ = run(tmp_path, [("fire", T0), ("fire", T0 + 600)])
    assert len(ids) == 1


def test_fires_missed_while_down_can_all_run(tmp_path):
    """With catchUp: all, every missed fire runs."""
    ids, _ = run(tmp_path, [("fire", T0), ("fire", T0 + 600)], catch_up="all")
    assert len(ids) == 10


def test_a_claim_that_failed_is_tried_again_at_the_next_tick(tmp_path):
    """The schedule clock's tick whose claim failed (the database away a moment) leaves
    the schedule due: the next tick, a second later, fires it."""
    broker = MemoryBroker()

    async def main() -> int:
        state = CrashingState(tmp_path / "events.db")
        plane = EventPlane(broker, state, _noop, log=lambda *a: None)
        plane.wire(manifest())
        plane._fire_due(T0)
        state.unavailable = True
        with pytest.raises(Crash):
            plane._fire_due(T0 + 61)
        plane._fire_due(T0 + 62)
        plane.unwire("cron-app")
        return len(broker.peek(async_queue("cron-app"), 100))

    assert asyncio.run(main()) == 1
