"""RedriveExecution in process, over a real workflows.db: a failed execution runs again
where it stopped; what succeeded (tasks, Map iterations, Waits) is not run again; the
redriven tasks get new tokens; a restart mid-redrive resumes it."""

from __future__ import annotations

import asyncio
import json

import pytest

from skiff import ipc as p
from skiff.errors import InvocationError
from skiff.platform.workflows import StepFunctions, StepFunctionsError
from skiff.store.workflow_history import SQLiteWorkflowHistory
from tests.unit.test_sfn_executor import REGISTRY, TASK, _until


class Flaky:
    """Doubles x; fails for every x in ``fail`` and never answers for x in ``hold``."""

    def __init__(self, fail: set, hold: frozenset = frozenset()) -> None:
        self.fail, self.hold = fail, hold
        self.seen: list[tuple[str, int]] = []

    async def __call__(self, inv) -> p.Response:  # noqa: ANN001
        x = json.loads(inv.request.payload)["x"]
        self.seen.append((inv.request.id, x))
        if x in self.hold:
            await asyncio.Event().wait()
        if x in self.fail:
            raise InvocationError(f"Declined: x={x}", code="handler_error")
        return p.Response(id=inv.request.id, body=json.dumps({"x": x * 2}).encode())


def _sfn(tmp_path, invoke) -> StepFunctions:  # noqa: ANN001
    return StepFunctions(SQLiteWorkflowHistory(tmp_path / "workflows.db"), REGISTRY, invoke)


async def _ended(sfn: StepFunctions, arn: str):  # noqa: ANN202
    await _until(lambda: sfn.describe(arn).status != "RUNNING", "the execution to end")
    return sfn.describe(arn)


LINE = {"StartAt": "A", "States": {
    "A": {**TASK, "Parameters": {"x": 1}, "ResultPath": "$.a", "Next": "B"},
    "B": {**TASK, "Parameters": {"x": 2}, "ResultPath": "$.b",
          "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1, "IntervalSeconds": 1,
                     "JitterStrategy": "FULL"}],
          "Next": "C"},
    "C": {"Type": "Pass", "Parameters": {"a.$": "$.a.x", "b.$": "$.b.x",
                                         "redrives.$": "$$.Execution.RedriveCount"},
          "End": True}}}


def test_a_failed_execution_is_redriven_from_the_failed_state(tmp_path) -> None:
    """A ran once, B failed its two attempts; redriven, only B runs (two new tokens: one
    attempt, as retries start over) and the execution succeeds with A's first result."""
    async def main() -> None:
        invoke = Flaky(fail={2})
        sfn = _sfn(tmp_path, invoke)
        sfn.save("line", LINE)
        row = await sfn.start_execution("line", {})
        failed = await _ended(sfn, row.arn)
        assert failed.status == "FAILED" and [x for _, x in invoke.seen] == [1, 2, 2]
        invoke.fail.clear()
        assert (await sfn.redrive(row.arn)).status in ("RUNNING", "SUCCEEDED")
        done = await _ended(sfn, row.arn)
        assert (done.status, done.output) == ("SUCCEEDED", {"a": 2, "b": 4, "redrives": 1})
        assert [x for _, x in invoke.seen] == [1, 2, 2, 2]
        assert len({rid for rid, _ in invoke.seen}) == 4  # the redriven attempt is new
        events = sfn.events(row.arn)
        assert [e["type"] for e in events].count("ExecutionRedriven") == 1
        scheduled = [e["token"] for e in events if e["type"] == "TaskScheduled"]
        assert scheduled[-1].endswith("/redrive1")
        with pytest.raises(StepFunctionsError) as again:
            await sfn.redrive(row.arn)
        assert again.value.aws_type == "ExecutionNotRedrivable"
        with pytest.raises(StepFunctionsError) as unknown:
            await sfn.redrive(row.arn + "-nope")
        assert unknown.value.aws_type == "ExecutionDoesNotExist"
        await sfn.stop()
    asyncio.run(main())


def test_a_redriven_map_runs_only_its_failed_iterations_and_a_wait_does_not_wait_again(
        tmp_path) -> None:
    """Iterations that succeeded are answered from the history; the Wait before the Map
    elapsed, so the redriven run does not wait again."""
    async def main() -> None:
        invoke = Flaky(fail={3})
        sfn = _sfn(tmp_path, invoke)
        sfn.save("fan", {"StartAt": "Nap", "States": {
            "Nap": {"Type": "Wait", "Seconds": 1, "Next": "M"},
            "M": {"Type": "Map", "ItemsPath": "$.items", "End": True,
                  "ItemProcessor": {"StartAt": "T", "States": {"T": {**TASK, "End": True}}}}}})
        row = await sfn.start_execution("fan", {"items": [{"x": i} for i in range(5)]})
        assert (await _ended(sfn, row.arn)).status == "FAILED"
        # the iterations whose result was recorded before the Map failed (one still in
        # flight then is cut short, and runs again, as on AWS)
        ended = {e["output"]["x"] // 2 for e in sfn.events(row.arn)
                 if e["type"] == "TaskSucceeded"}
        invoke.fail.clear()
        invoke.seen.clear()
        await sfn.redrive(row.arn)
        done = await _ended(sfn, row.arn)
        assert done.status == "SUCCEEDED" and done.output == [{"x": 2 * i} for i in range(5)]
        assert 3 not in ended and ended
        assert sorted(x for _, x in invoke.seen) == sorted(set(range(5)) - ended)
        timers = [e for e in sfn.events(row.arn) if e["type"] == "TimerStarted"]
        assert len(timers) == 1  # the Wait that elapsed was not started again
        await sfn.stop()
    asyncio.run(main())


def test_a_restart_during_a_redrive_resumes_it(tmp_path) -> None:
    """Executor A redrives, then dies with the redriven task in flight; executor B over
    the same file resumes the redriven execution and runs only that task."""
    async def main() -> None:
        a_invoke = Flaky(fail={2})
        a = _sfn(tmp_path, a_invoke)
        a.save("line", LINE)
        row = await a.start_execution("line", {})
        assert (await _ended(a, row.arn)).status == "FAILED"
        a_invoke.fail.clear()
        a_invoke.hold = frozenset({2})
        await a.redrive(row.arn)
        await _until(lambda: len(a_invoke.seen) == 4, "the redriven task")
        a._closing = True  # as if killed
        b_invoke = Flaky(fail=set())
        b = _sfn(tmp_path, b_invoke)
        assert b.describe(row.arn).status == "RUNNING"
        await b.start()
        done = await _ended(b, row.arn)
        assert (done.status, done.output) == ("SUCCEEDED", {"a": 2, "b": 4, "redrives": 1})
        assert b_invoke.seen == [a_invoke.seen[-1]]  # the same token's request id, B only
        await a.stop()
        await b.stop()
    asyncio.run(main())
