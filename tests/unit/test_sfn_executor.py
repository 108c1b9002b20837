"""The durable executor in process, over a real workflows.db and a scripted invoke:
its limits (running executions, history events, payload bytes), a 100-item Map, and a
restart that runs the task in flight again with the same request id."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from skiff import ipc as p
from skiff.platform.workflows import StepFunctions, StepFunctionsError, WorkflowLimits
from skiff.store.workflow_history import SQLiteWorkflowHistory

APP = SimpleNamespace(name="worker", kind="lambda", pool=object(),
                      manifest=SimpleNamespace(spec=SimpleNamespace(
                          resources=SimpleNamespace(timeout=30.0))))
REGISTRY = SimpleNamespace(apps={"worker": APP})
TASK = {"Type": "Task", "Resource": "skiff:app/worker"}


class Invoke:
    """Answers each invocation with its event doubled; events whose x is in ``hold``
    wait for ever (a task in flight when the platform dies)."""

    def __init__(self, hold: frozenset = frozenset()) -> None:
        self.seen: list[tuple[str, object]] = []
        self.hold = hold

    async def __call__(self, inv) -> p.Response:  # noqa: ANN001
        event = json.loads(inv.request.payload)
        self.seen.append((inv.request.id, event))
        if event["x"] in self.hold:
            await asyncio.Event().wait()
        return p.Response(id=inv.request.id, body=json.dumps({"x": event["x"] * 2}).encode())


async def _until(predicate, what: str) -> None:  # noqa: ANN001
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def _sfn(tmp_path, invoke, **kw) -> StepFunctions:  # noqa: ANN001
    history = SQLiteWorkflowHistory(tmp_path / "workflows.db", exclusive=False)
    return StepFunctions(history, REGISTRY, invoke, **kw)


def test_a_100_item_map_runs_each_task_once(tmp_path) -> None:
    """A Map of 100 items (40 at a time) invokes each item once and keeps their order."""
    async def main() -> None:
        invoke = Invoke()
        sfn = _sfn(tmp_path, invoke)
        sfn.save("fan", {"StartAt": "M", "States": {"M": {
            "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 40, "End": True,
            "ItemProcessor": {"StartAt": "T", "States": {"T": {**TASK, "End": True}}}}}})
        row = await sfn.start_execution("fan", {"items": [{"x": i} for i in range(100)]})
        await _until(lambda: sfn.describe(row.arn).status != "RUNNING", "the Map")
        done = sfn.describe(row.arn)
        assert done.status == "SUCCEEDED", done
        assert done.output == [{"x": 2 * i} for i in range(100)]
        assert sorted(e["x"] for _, e in invoke.seen) == list(range(100))
        assert len({rid for rid, _ in invoke.seen}) == 100
        await sfn.stop()
    asyncio.run(main())


def test_a_restart_runs_the_task_in_flight_again_with_its_request_id(tmp_path) -> None:
    """Executor A dies with a task in flight; executor B over the same file runs that
    task again with the same request id, and not the one already answered."""
    async def main() -> None:
        first = Invoke(hold=frozenset({2}))
        a = _sfn(tmp_path, first)
        a.save("two", {"StartAt": "A", "States": {
            "A": {**TASK, "Next": "B"}, "B": {**TASK, "End": True}}})
        row = await a.start_execution("two", {"x": 1})
        await _until(lambda: len(first.seen) == 2, "task B")
        a._closing = True  # as if killed: nothing more is recorded
        second = Invoke()
        b = _sfn(tmp_path, second)
        await b.start()
        await _until(lambda: b.describe(row.arn).status == "SUCCEEDED", "the resumed execution")
        assert second.seen == [first.seen[1]]  # B again, same request id; A not again
        assert b.describe(row.arn).output == {"x": 4}
        await a.stop()
        await b.stop()
    asyncio.run(main())


def test_limits_are_enforced_with_aws_errors(tmp_path) -> None:
    """Past SKIFF_SFN_MAX_RUNNING a start is refused (ExecutionLimitExceeded); a history
    past its limit fails the execution (States.Runtime); an input past the payload limit
    fails it with States.DataLimitExceeded."""
    async def main() -> None:
        sfn = _sfn(tmp_path, Invoke(), max_running=1,
                   limits=WorkflowLimits(max_history_events=50, max_payload_bytes=1000))
        sfn.save("nap", {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600,
                                                          "End": True}}})
        await sfn.start_execution("nap", {})
        with pytest.raises(StepFunctionsError) as refused:
            await sfn.start_execution("nap", {})
        assert refused.value.aws_type == "ExecutionLimitExceeded"
        assert refused.value.status == 429
        sfn.max_running = 10
        sfn.save("loop", {"StartAt": "P", "States": {
            "P": {"Type": "Pass", "Next": "C"},
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.stop", "IsPresent": True,
                                                 "Next": "End"}], "Default": "P"},
            "End": {"Type": "Succeed"}}})
        looped = await sfn.start_execution("loop", {})
        assert (sfn.describe(looped.arn).status, sfn.describe(looped.arn).error) == (
            "FAILED", "States.Runtime")
        assert "maximum number of history events (50)" in sfn.describe(looped.arn).cause
        assert len(sfn.events(looped.arn)) < 60  # the limit, and the few events ending it
        big = await sfn.start_execution("nap", {"blob": "x" * 2000})
        assert (sfn.describe(big.arn).status, sfn.describe(big.arn).error) == (
            "FAILED", "States.DataLimitExceeded")
        await sfn.stop()
    asyncio.run(main())
