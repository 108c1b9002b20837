"""One node runs each execution on a shared (PostgreSQL) history: two executors in
process over one database, as two nodes. The second does not resume what the first
holds; when the first dies (stops renewing), the second takes its executions over once
their leases run out and runs the task in flight again with the same request id."""

from __future__ import annotations

import asyncio

from skiff.platform.workflows import StepFunctions
from skiff.store.workflow_history_postgres import PostgresWorkflowHistory
from tests.postgres import pg_database  # noqa: F401 - a fixture
from tests.unit.test_sfn_executor import REGISTRY, TASK, Invoke, _until

LEASE = 0.6  # seconds: short, so the takeover comes within the test


def _node(db, name: str, invoke) -> StepFunctions:  # noqa: ANN001
    return StepFunctions(PostgresWorkflowHistory(db), REGISTRY, invoke, node=name,
                         lease_seconds=LEASE)


def test_a_dead_nodes_execution_is_resumed_by_one_other_node(pg_database) -> None:  # noqa: F811
    async def main() -> None:
        a_invoke = Invoke(hold=frozenset({2}))
        a = _node(pg_database, "a", a_invoke)
        await a.start()
        a.save("two", {"StartAt": "A", "States": {
            "A": {**TASK, "Next": "B"}, "B": {**TASK, "End": True}}})
        row = await a.start_execution("two", {"x": 1})
        await _until(lambda: len(a_invoke.seen) == 2, "task B on node a")
        b_invoke, c_invoke = Invoke(), Invoke()
        b = _node(pg_database, "b", b_invoke)
        c = _node(pg_database, "c", c_invoke)
        await b.start()
        await c.start()
        await asyncio.sleep(LEASE * 2)  # a renews: b and c leave its execution alone
        assert b_invoke.seen == [] and c_invoke.seen == []
        assert row.arn not in b._live and row.arn not in c._live
        a._leases.cancel()  # node a dies: nothing renews its lease, nothing more recorded
        a._closing = True
        await _until(lambda: b_invoke.seen or c_invoke.seen, "another node to take over")
        await _until(lambda: b.describe(row.arn).status == "SUCCEEDED", "the execution")
        again = b_invoke.seen + c_invoke.seen
        assert again == [a_invoke.seen[1]]  # B once more, with its request id; A not again
        assert b.describe(row.arn).output == {"x": 4}
        for node in (a, b, c):
            await node.stop()
    asyncio.run(main())
