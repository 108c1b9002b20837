"""State machine triggers on the event plane, in process: a schedule's fire goes to the
machine's own queue and starts one execution named from the fire; a queue trigger
must be a queue of the machine's app that nothing else consumes."""

from __future__ import annotations

import asyncio

import pytest

from skiff.bus import MemoryBroker
from skiff.errors import Conflict, Forbidden
from skiff.manifest import parse_manifest
from skiff.store.trigger_state import SQLiteTriggerState
from skiff.triggers import EventPlane
from skiff.triggers.plane import execution_name, machine_queue
from tests.unit.test_schedules_plane import T0, _noop


def _app(name: str, queues: list[str], consumes: str | None = None):  # noqa: ANN202
    spec = {"handler": "app:handler", "queues": [{"name": q} for q in queues]}
    if consumes:
        spec["triggers"] = [{"queue": consumes}]
    return parse_manifest({"apiVersion": "skiff.dev/v1", "kind": "MicroApp",
                           "metadata": {"name": name}, "spec": spec})


def test_a_schedule_fire_starts_one_execution_named_from_the_fire(tmp_path) -> None:
    async def main() -> None:
        broker = MemoryBroker()
        plane = EventPlane(broker, SQLiteTriggerState(tmp_path / "events.db"), _noop,
                           log=lambda *a: None)
        started: list[tuple[str, dict, str]] = []

        async def start(machine: str, value: dict, name: str) -> None:
            started.append((machine, value, name))

        plane.wire_machine("nightly", None, [{"schedule": "rate(1 minute)"}], start)
        plane.fire_due_schedules(T0)  # the first look: the schedule starts now
        plane.fire_due_schedules(T0 + 61)
        for _ in range(400):  # started, then acked
            if started and not broker.peek(machine_queue("nightly"), 10):
                break
            await asyncio.sleep(0.005)
        [(machine, value, name)] = started
        assert machine == "nightly" and value["detail-type"] == "Scheduled Event"
        assert name == execution_name(value["id"])
        assert broker.peek(machine_queue("nightly"), 10) == []
        plane.unwire_machine("nightly")
        await plane.dispatcher.close()
    asyncio.run(main())


def test_a_queue_trigger_must_be_the_machines_apps_and_unconsumed(tmp_path) -> None:
    async def main() -> None:
        plane = EventPlane(MemoryBroker(), SQLiteTriggerState(tmp_path / "events.db"), _noop,
                           log=lambda *a: None)
        plane.wire(_app("shop", ["orders", "busy"], consumes="busy"))
        plane.wire(_app("bank", ["ledger"]))
        plane.check_machine("flow", "shop", [{"queue": "orders"},
                                             {"schedule": "rate(1 hour)"}])
        for app, queue, error, says in [
                ("shop", "ledger", Forbidden, "but of app bank"),
                ("shop", "nowhere", Forbidden, "not a queue of its app shop"),
                (None, "orders", Forbidden, "set spec.app"),
                ("shop", "busy", Conflict, "consumed by app shop")]:
            with pytest.raises(error) as refused:
                plane.check_machine("flow", app, [{"queue": queue}])
            assert says in refused.value.message
        await plane.dispatcher.close()
    asyncio.run(main())
