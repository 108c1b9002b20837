"""The one contract every WorkflowHistory backend keeps (workflows.db's SQLite and
PostgresWorkflowHistory, via the ``workflow_history`` fixture)."""

from __future__ import annotations

import pytest

from skiff.store.workflow_history import (
    ExecutionRow,
    Finish,
    HistoryConflict,
    MachineRow,
    WorkflowHistory,
)


def _machine(name: str = "orders", revision: str = "r1", created: float = 1.0) -> MachineRow:
    return MachineRow(name, revision, '{"StartAt":"A","States":{"A":{"Type":"Succeed"}}}',
                      "STANDARD", created)


def _execution(arn: str = "arn:x:1", machine: str = "orders", start: float = 10.0,
               status: str = "RUNNING") -> ExecutionRow:
    return ExecutionRow(arn, arn.rpartition(":")[2], machine, "r1", status,
                        {"order": "o-1", "ünï": [1, 2.5, None]}, start)


def test_a_saved_machine_becomes_current_and_revisions_stay(
        workflow_history: WorkflowHistory) -> None:
    """save_machine keeps each revision and moves the current one; re-saving a revision
    keeps its first content (content-addressed)."""
    h = workflow_history
    assert h.machine("orders") is None and h.machines() == []
    h.save_machine(_machine(revision="r1"))
    h.save_machine(_machine(revision="r2", created=2.0))
    assert h.machine("orders").revision == "r2"
    assert h.machine("orders", "r1") == _machine(revision="r1")
    h.save_machine(_machine(revision="r1", created=9.0))  # a rollback to r1
    assert h.machine("orders") == _machine(revision="r1")
    h.save_machine(_machine(name="billing"))
    assert [m.name for m in h.machines()] == ["billing", "orders"]
    assert h.machine("orders", "nope") is None
    assert [m.revision for m in h.machine_revisions("orders")] == ["r1", "r2"]
    assert h.machine_revisions("nope") == []


def test_a_machine_keeps_the_app_it_acts_as(workflow_history: WorkflowHistory) -> None:
    """A revision's app (spec.app) and triggers come back as saved, from every read; None stays None."""
    h = workflow_history
    bound = MachineRow("saga", "r9", '{"StartAt":"A","States":{"A":{"Type":"Succeed"}}}',
                       "EXPRESS", 3.0, app="shop",
                       triggers=({"schedule": "rate(1 hour)"}, {"queue": "orders"}))
    h.save_machine(bound)
    h.save_machine(_machine())
    assert h.machine("saga") == bound and h.machine("saga", "r9") == bound
    assert h.machine_revisions("saga") == [bound]
    assert {m.name: m.app for m in h.machines()} == {"orders": None, "saga": "shop"}


def test_an_execution_is_created_once(workflow_history: WorkflowHistory) -> None:
    """create_execution says whether the ARN is new; the first row stays."""
    h = workflow_history
    assert h.create_execution(_execution()) is True
    assert h.create_execution(_execution(start=99.0)) is False
    assert h.execution("arn:x:1") == _execution()
    assert h.execution("arn:x:nope") is None


def test_events_append_in_order_and_an_id_is_written_once(
        workflow_history: WorkflowHistory) -> None:
    """The history comes back in id order, as appended; appending an id that exists
    fails as a whole (no event of that batch is kept)."""
    h = workflow_history
    h.create_execution(_execution())
    first = [{"id": 1, "type": "ExecutionStarted", "timestamp": 10.0, "input": {"a": "é"}},
             {"id": 2, "type": "PassStateEntered", "timestamp": 10.0, "name": "A"}]
    h.append("arn:x:1", first)
    h.append("arn:x:1", [{"id": 3, "type": "TaskSucceeded", "timestamp": 11.0, "token": "t"}])
    with pytest.raises(HistoryConflict):
        h.append("arn:x:1", [{"id": 4, "type": "X", "timestamp": 12.0},
                             {"id": 3, "type": "Y", "timestamp": 12.0}])
    assert [e["id"] for e in h.history("arn:x:1")] == [1, 2, 3]
    assert h.history("arn:x:1")[:2] == first
    assert h.history("arn:x:nope") == []


def test_finish_is_written_with_the_last_events(workflow_history: WorkflowHistory) -> None:
    """append with finish ends the execution in the same transaction; running() lists
    only what still runs, oldest first; a failed append finishes nothing."""
    h = workflow_history
    for i, start in ((1, 30.0), (2, 10.0), (3, 20.0)):
        h.create_execution(_execution(f"arn:x:{i}", start=start))
    h.append("arn:x:1", [{"id": 1, "type": "ExecutionStarted", "timestamp": 30.0}])
    with pytest.raises(HistoryConflict):
        h.append("arn:x:1", [{"id": 1, "type": "ExecutionSucceeded", "timestamp": 31.0}],
                 Finish("SUCCEEDED", 31.0, output={"ok": True}))
    assert h.execution("arn:x:1").status == "RUNNING"
    h.append("arn:x:1", [{"id": 2, "type": "ExecutionSucceeded", "timestamp": 31.0}],
             Finish("SUCCEEDED", 31.0, output={"ok": True}))
    h.append("arn:x:2", [], Finish("FAILED", 12.0, error="States.TaskFailed", cause="boom"))
    done = h.execution("arn:x:1")
    assert (done.status, done.output, done.stop) == ("SUCCEEDED", {"ok": True}, 31.0)
    failed = h.execution("arn:x:2")
    assert (failed.status, failed.error, failed.cause, failed.output) == (
        "FAILED", "States.TaskFailed", "boom", None)
    assert [r.arn for r in h.running()] == ["arn:x:3"]


def test_executions_list_newest_first_with_filters(workflow_history: WorkflowHistory) -> None:
    """executions() filters by machine and status and is bounded by limit."""
    h = workflow_history
    h.create_execution(_execution("arn:x:1", start=1.0))
    h.create_execution(_execution("arn:x:2", start=2.0, status="SUCCEEDED"))
    h.create_execution(_execution("arn:y:1", machine="billing", start=3.0))
    assert [r.arn for r in h.executions()] == ["arn:y:1", "arn:x:2", "arn:x:1"]
    assert [r.arn for r in h.executions(machine="orders")] == ["arn:x:2", "arn:x:1"]
    assert [r.arn for r in h.executions(status="RUNNING")] == ["arn:y:1", "arn:x:1"]
    assert [r.arn for r in h.executions(limit=1)] == ["arn:y:1"]


def test_deleting_a_machine_forgets_its_executions(workflow_history: WorkflowHistory) -> None:
    """delete_machine drops its revisions, executions and histories; others stay."""
    h = workflow_history
    h.save_machine(_machine())
    h.save_machine(_machine(name="billing"))
    h.create_execution(_execution("arn:x:1"))
    h.create_execution(_execution("arn:y:1", machine="billing"))
    for arn in ("arn:x:1", "arn:y:1"):
        h.append(arn, [{"id": 1, "type": "ExecutionStarted", "timestamp": 1.0}])
    h.delete_machine("orders")
    assert h.machine("orders") is None and h.machine("orders", "r1") is None
    assert h.execution("arn:x:1") is None and h.history("arn:x:1") == []
    assert h.execution("arn:y:1") is not None and len(h.history("arn:y:1")) == 1


def test_the_history_survives_reopening(tmp_path) -> None:
    """What was appended is there after the file is closed and opened again."""
    from skiff.store.workflow_history import SQLiteWorkflowHistory

    h = SQLiteWorkflowHistory(tmp_path / "w.db", exclusive=True)
    h.create_execution(_execution())
    h.append("arn:x:1", [{"id": 1, "type": "ExecutionStarted", "timestamp": 1.0}])
    h.close()
    again = SQLiteWorkflowHistory(tmp_path / "w.db", exclusive=True)
    assert again.execution("arn:x:1").status == "RUNNING"
    assert len(again.history("arn:x:1")) == 1
    again.close()


def test_one_owner_holds_an_execution_until_its_lease_runs_out(
        workflow_history: WorkflowHistory) -> None:
    """A lease taken at create or by claim is the owner's until it runs out: another
    claims it only then; renew extends only the leases the owner still holds; orphans
    are the RUNNING executions with no lease or a lapsed one."""
    h = workflow_history
    assert h.create_execution(_execution("arn:x:1"), owner="a", until=100.0)
    assert h.create_execution(_execution("arn:x:2"))  # no lease: an orphan at once
    assert h.claim("arn:x:1", "b", 200.0, now=50.0) is False  # a holds it
    assert h.claim("arn:x:1", "a", 150.0, now=50.0) is True  # its own, again
    assert [r.arn for r in h.orphans(now=120.0)] == ["arn:x:2"]
    assert [r.arn for r in h.orphans(now=151.0)] == ["arn:x:1", "arn:x:2"]
    assert h.claim("arn:x:1", "b", 300.0, now=151.0) is True  # a's lease ran out
    assert h.renew("a", ["arn:x:1", "arn:x:2"], 400.0) == set()  # a holds neither now
    assert h.renew("b", ["arn:x:1"], 400.0) == {"arn:x:1"}
    assert h.claim("arn:x:1", "a", 500.0, now=399.0) is False
    h.append("arn:x:2", [{"id": 1, "type": "ExecutionStarted"}],
             Finish("SUCCEEDED", 5.0, output=1))
    assert h.claim("arn:x:2", "a", 500.0, now=1.0) is False  # only RUNNING ones
    assert [r.arn for r in h.orphans(now=1000.0)] == ["arn:x:1"]

