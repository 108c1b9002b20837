"""Service integrations of the durable executor, in process over a real workflows.db and
real skiff.sdk Services (a MemoryKV; queues and the bus as recorders with the event
plane's ownership rule): queue sends, events, KV, nested executions, and what a machine
of one app may not reach of another's."""

from __future__ import annotations

import asyncio
import json

import pytest

from skiff.errors import Forbidden, NotFound
from skiff.platform.workflows import StepFunctions
from skiff.sdk.services import Services
from skiff.store.kv import MemoryKV
from skiff.store.workflow_history import SQLiteWorkflowHistory
from skiff.workflows import InvalidDefinition, parse
from skiff.workflows.errors import StatesError
from skiff.workflows.integrations import Reach, ServiceCall, reaches, service_call
from tests.unit.test_sfn_executor import REGISTRY, TASK, Invoke, _until

#: queue -> owning app (the event plane's rule: a queue has one owner)
OWNED = {"orders": "shop", "ledger": "bank"}


class Bus:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict | None, float]] = []
        self.published: list[dict] = []

    def send(self, queue: str, body: bytes, attributes: dict | None, delay: float) -> str:
        self.sent.append((queue, body.decode(), attributes, delay))
        return f"m-{len(self.sent)}"

    def publish(self, event: dict) -> dict:
        self.published.append(event)
        return {"id": event["id"], "matched": []}

    @staticmethod
    def may_send(app: str, queue: str) -> None:
        if queue not in OWNED:
            raise NotFound(f"no app owns queue {queue!r}", code="queue_not_found")
        if OWNED[queue] != app:
            raise Forbidden(f"app {app} may not send to queue {queue!r}: it belongs to app "
                            f"{OWNED[queue]}", code="queue_forbidden")


def _sfn(tmp_path, bus: Bus, invoke=None, kv=None) -> StepFunctions:  # noqa: ANN001
    services = Services(kv or MemoryKV(), send=bus.send, publish=bus.publish,
                        may_send=bus.may_send)
    return StepFunctions(SQLiteWorkflowHistory(tmp_path / "workflows.db"), REGISTRY,
                         invoke or Invoke(), services=services)


def _machine(*states: tuple[str, dict]) -> dict:
    out = {}
    for i, (name, st) in enumerate(states):
        out[name] = {**st, **({"Next": states[i + 1][0]} if i + 1 < len(states) else
                              {"End": True})}
    return {"StartAt": states[0][0], "States": out}


async def _run(sfn: StepFunctions, machine: str, value=None):  # noqa: ANN001, ANN202
    row = await sfn.start_execution(machine, value if value is not None else {})
    await _until(lambda: sfn.describe(row.arn).status != "RUNNING", f"{machine} to end")
    return sfn.describe(row.arn)


@pytest.mark.parametrize(("resource", "given", "expected"), [
    ("arn:aws:states:::sqs:sendMessage",
     {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/1/orders", "MessageBody": {"a": 1}},
     ServiceCall("queue", "send", {"queue": "orders", "body": {"a": 1}, "delay": 0,
                                   "attributes": None})),
    ("arn:aws:states:::sqs:sendMessage.waitForTaskToken",
     {"QueueUrl": "arn:aws:sqs:us-east-1:1:orders", "MessageBody": "x", "DelaySeconds": 5,
      "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}},
     ServiceCall("queue", "send", {"queue": "orders", "body": "x", "delay": 5,
                                   "attributes": {"k": "v"}}, "token")),
    ("skiff:queue/orders", [1, 2],
     ServiceCall("queue", "send", {"queue": "orders", "body": [1, 2], "delay": 0,
                                   "attributes": None}, aws=False)),
    ("arn:aws:states:::events:putEvents",
     {"Entries": [{"Source": "shop", "DetailType": "OrderPlaced", "Detail": {"id": 1}}]},
     ServiceCall("events", "publish", [{"type": "OrderPlaced", "source": "shop",
                                        "data": {"id": 1}}])),
    ("skiff:kv/put", {"key": "k", "value": 3, "ifAbsent": True},
     ServiceCall("kv", "put", {"key": "k", "value": 3, "ifAbsent": True}, aws=False)),
    ("arn:aws:states:::states:startExecution.sync:2",
     {"StateMachineArn": "arn:aws:states:local:0:stateMachine:child", "Input": {"n": 1}},
     ServiceCall("execution", "start", {"machine": "arn:aws:states:local:0:stateMachine:child",
                                        "input": {"n": 1}, "name": None}, "sync:2")),
])
def test_service_calls_read_the_aws_and_skiff_forms(resource, given, expected) -> None:  # noqa: ANN001
    """Each form becomes the call it names, with its AWS parameters translated."""
    assert service_call(resource, given) == expected


@pytest.mark.parametrize(("resource", "given", "says"), [
    ("arn:aws:states:::sqs:sendMessage", {"MessageBody": 1}, "needs a QueueUrl"),
    ("arn:aws:states:::sqs:sendMessage", {"QueueUrl": "q", "MessageBody": 1,
                                          "DelaySeconds": 901}, "0 to 900"),
    ("arn:aws:states:::events:putEvents", {"Entries": []}, "1 to 10"),
    ("arn:aws:states:::events:putEvents", {"Entries": [{"Source": "s"}]}, "DetailType"),
    ("skiff:kv/get", {"key": "k", "value": 1}, "not value"),
    ("skiff:kv/scan", {"key": "k"}, "skiff:kv/get|put|delete|incr"),
    ("skiff:kv/get.waitForTaskToken", {"key": "k"}, "no .waitForTaskToken"),
    ("arn:aws:states:::sqs:sendMessage.sync", {"QueueUrl": "q"}, "only states:startExecution"),
    ("arn:aws:states:::states:startExecution", {"Input": {}}, "needs a StateMachineArn"),
])
def test_a_malformed_service_call_is_a_task_failure_naming_the_field(resource, given,  # noqa: ANN001
                                                                     says) -> None:
    with pytest.raises(StatesError) as err:
        service_call(resource, given)
    assert err.value.error == "States.TaskFailed" and says in err.value.cause


def test_reaches_names_literal_queues_and_machines_even_in_branches() -> None:
    machine = parse(_machine(
        ("Q", {"Type": "Task", "Resource": "skiff:queue/orders"}),
        ("P", {"Type": "Parallel", "Branches": [_machine(
            ("S", {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                   "Parameters": {"QueueUrl.$": "$.q", "MessageBody": "x"}}),
            ("X", {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution",
                   "Parameters": {"StateMachineArn": "child"}}))]}),
        ("K", {"Type": "Task", "Resource": "skiff:kv/get", "Parameters": {"key": "k"}})))
    assert reaches(machine) == [Reach("queue", "orders", "Q"), Reach("queue", None, "S"),
                                Reach("execution", "child", "X"), Reach("kv", None, "K")]


def test_a_machine_sends_publishes_and_uses_its_apps_kv(tmp_path) -> None:
    """sqs:sendMessage, events:putEvents and skiff:kv/* as the machine's app, with AWS's
    result shapes; the KV written is the app's own namespace."""
    async def main() -> None:
        bus, kv = Bus(), MemoryKV()
        sfn = _sfn(tmp_path, bus, kv=kv)
        sfn.save("checkout", _machine(
            ("Send", {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                      "Parameters": {"QueueUrl": "http://127.0.0.1/000000000000/orders",
                                     "MessageBody.$": "$.order"}, "ResultPath": "$.sent"}),
            ("Short", {"Type": "Task", "Resource": "skiff:queue/orders",
                       "InputPath": "$.order", "ResultPath": "$.short"}),
            ("Put", {"Type": "Task", "Resource": "skiff:kv/put",
                     "Parameters": {"key": "last", "value.$": "$.order"}, "ResultPath": None}),
            ("Get", {"Type": "Task", "Resource": "skiff:kv/get",
                     "Parameters": {"key": "last"}, "ResultPath": "$.got"}),
            ("Tell", {"Type": "Task", "Resource": "arn:aws:states:::events:putEvents",
                      "Parameters": {"Entries": [{"Source": "shop", "DetailType": "Placed",
                                                  "Detail.$": "$.order"}]},
                      "ResultPath": "$.told"})), app="shop")
        done = await _run(sfn, "checkout", {"order": {"id": 7}})
        assert done.status == "SUCCEEDED", done
        out = done.output
        assert bus.sent == [("orders", '{"id": 7}', None, 0.0), ("orders", '{"id": 7}', None, 0.0)]
        assert out["sent"]["MessageId"] == "m-1" and len(out["sent"]["MD5OfMessageBody"]) == 32
        assert out["short"] == {"MessageId": "m-2"}
        assert out["got"]["value"] == {"id": 7} and kv.get("shop", "last").value == {"id": 7}
        [event] = bus.published
        assert (event["type"], event["source"], event["data"]) == ("Placed", "shop", {"id": 7})
        assert out["told"] == {"Entries": [{"EventId": event["id"]}], "FailedEntryCount": 0}
        await sfn.stop()
    asyncio.run(main())


def test_another_apps_queue_and_machine_are_refused_at_deploy(tmp_path) -> None:
    """A literal queue of another app, a machine of another app, or any service from a
    machine that belongs to no app: refused at deploy, naming the state."""
    sfn = _sfn(tmp_path, Bus())
    sfn.save("bank-job", _machine(("P", {"Type": "Pass"})), app="bank")
    cases = [
        ("shop", _machine(("Steal", {"Type": "Task", "Resource": "skiff:queue/ledger"})),
         "/States/Steal/Resource", "belongs to app bank"),
        ("shop", _machine(("Nope", {"Type": "Task", "Resource": "skiff:queue/missing"})),
         "/States/Nope/Resource", "no app owns queue"),
        ("shop", _machine(("Run", {"Type": "Task",
                                   "Resource": "arn:aws:states:::states:startExecution",
                                   "Parameters": {"StateMachineArn": "bank-job"}})),
         "/States/Run/Resource", "starts only machines of its own app"),
        (None, _machine(("Kv", {"Type": "Task", "Resource": "skiff:kv/get",
                                "Parameters": {"key": "k"}})),
         "/States/Kv/Resource", "set spec.app"),
    ]
    for app, definition, location, says in cases:
        with pytest.raises(InvalidDefinition) as refused:
            sfn.save("thief", definition, app=app)
        [d] = refused.value.diagnostics
        assert (d.code, d.location) == ("INVALID_RESOURCE", location) and says in d.message
    assert sfn.history.machine("thief") is None


def test_another_apps_queue_named_at_run_time_fails_the_task_with_aws_errors(tmp_path) -> None:
    """A QueueUrl or StateMachineArn from the input is checked when the task runs: the
    task fails (SQS.AccessDeniedException, StepFunctions.AccessDeniedException) and a
    Catch sees it; nothing was sent or started."""
    async def main() -> None:
        bus = Bus()
        sfn = _sfn(tmp_path, bus)
        sfn.save("bank-job", _machine(("P", {"Type": "Pass"})), app="bank")
        sfn.save("relay", _machine(
            ("Send", {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                      "Parameters": {"QueueUrl.$": "$.queue", "MessageBody": "hi"},
                      "Catch": [{"ErrorEquals": ["SQS.AccessDeniedException"],
                                 "ResultPath": "$.caught", "Next": "Start"}]}),
            ("Start", {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution",
                       "Parameters": {"StateMachineArn.$": "$.machine"}})), app="shop")
        done = await _run(sfn, "relay", {"queue": "ledger", "machine": "bank-job"})
        assert (done.status, done.error) == ("FAILED", "StepFunctions.AccessDeniedException")
        assert "machine of app bank" in done.cause
        assert bus.sent == [] and sfn.executions("bank-job") == []
        events = sfn.events(done.arn)
        caught = [e for e in events if e["type"] == "TaskFailed"][0]
        assert caught["error"] == "SQS.AccessDeniedException"
        assert "belongs to app bank" in caught["cause"]
        await sfn.stop()
    asyncio.run(main())


def test_nested_executions_sync_sync2_and_fire_and_forget(tmp_path) -> None:
    """.sync returns the child's Output as JSON text, .sync:2 as JSON; a child that
    fails fails the .sync task (States.TaskFailed, its description as Cause); the plain
    form returns at once with the child's ARN."""
    async def main() -> None:
        sfn = _sfn(tmp_path, Bus())
        sfn.save("child", {"StartAt": "Check", "States": {
            "Check": {"Type": "Choice", "Choices": [
                {"Variable": "$.fail", "IsPresent": True, "Next": "Boom"}],
                "Default": "Double"},
            "Double": {**TASK, "Parameters": {"x.$": "$.n"}, "End": True},
            "Boom": {"Type": "Fail", "Error": "Child.Failed", "Cause": "asked to"}}},
            app="shop")
        start = "arn:aws:states:::states:startExecution"
        sfn.save("parent", _machine(
            ("Two", {"Type": "Task", "Resource": start + ".sync:2",
                     "Parameters": {"StateMachineArn": "child", "Input": {"n": 2}},
                     "ResultSelector": {"out.$": "$.Output", "status.$": "$.Status"},
                     "ResultPath": "$.two"}),
            ("One", {"Type": "Task", "Resource": start + ".sync",
                     "Parameters": {"StateMachineArn": "child", "Input": "{\"n\": 5}"},
                     "ResultSelector": {"out.$": "$.Output"}, "ResultPath": "$.one"}),
            ("Forget", {"Type": "Task", "Resource": start,
                        "Parameters": {"StateMachineArn": "child", "Name": "bg",
                                       "Input": {"n": 1}}, "ResultPath": "$.bg"}),
            ("Fails", {"Type": "Task", "Resource": start + ".sync:2",
                       "Parameters": {"StateMachineArn": "child", "Input": {"fail": 1}},
                       "Catch": [{"ErrorEquals": ["States.TaskFailed"],
                                  "ResultPath": "$.failed", "Next": "Done"}]}),
            ("Done", {"Type": "Pass"})), app="shop")
        done = await _run(sfn, "parent")
        assert done.status == "SUCCEEDED", done
        out = done.output
        assert out["two"] == {"out": {"x": 4}, "status": "SUCCEEDED"}
        assert out["one"] == {"out": '{"x":10}'}
        assert out["bg"]["ExecutionArn"].endswith(":child:bg")
        cause = json.loads(out["failed"]["Cause"])
        assert (cause["Status"], cause["Error"]) == ("FAILED", "Child.Failed")
        await _until(lambda: sfn.describe(out["bg"]["ExecutionArn"]).status == "SUCCEEDED",
                     "the background child")
        assert len(sfn.executions("child")) == 4
        await sfn.stop()
    asyncio.run(main())


def test_a_restart_waits_for_the_child_it_started_instead_of_starting_another(tmp_path) -> None:
    """The platform dies while a .sync task waits for its child: after the restart the
    task runs again with the same token, finds the child by its token-made name, and
    returns its result; one child in all."""
    async def main() -> None:
        first = Invoke(hold=frozenset({3}))
        a = _sfn(tmp_path, Bus(), first)
        a.save("child", _machine(("Double", TASK)), app="shop")
        a.save("parent", _machine(("Run", {
            "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
            "Parameters": {"StateMachineArn": "child", "Input": {"x": 3}},
            "OutputPath": "$.Output"})), app="shop")
        row = await a.start_execution("parent", {})
        await _until(lambda: len(first.seen) == 1, "the child's task")
        a._closing = True  # as if killed: nothing more is recorded
        b = _sfn(tmp_path, Bus(), Invoke())
        await b.start()
        await _until(lambda: b.describe(row.arn).status != "RUNNING", "the resumed parent")
        assert (b.describe(row.arn).status, b.describe(row.arn).output) == ("SUCCEEDED",
                                                                            {"x": 6})
        assert len(b.executions("child")) == 1
        await a.stop()
        await b.stop()
    asyncio.run(main())


def test_start_wires_every_machines_triggers_and_routes_from_the_history(tmp_path) -> None:
    """After a restart the triggers of each machine's current revision are wired again
    from workflows.db (the event plane gets the bus ones, the gateway the http route),
    and a rollback rewires those of the revision it makes current."""
    class Recorder:
        def __init__(self) -> None:
            self.wired: dict[str, list] = {}

        def check_machine(self, name, app, triggers) -> None:  # noqa: ANN001
            pass

        def wire_machine(self, name, app, triggers, start) -> None:  # noqa: ANN001
            self.wired[name] = list(triggers)

        def unwire_machine(self, name) -> None:  # noqa: ANN001
            self.wired.pop(name, None)

        def forget_machine(self, name) -> None:  # noqa: ANN001
            pass

    def node(triggers: Recorder) -> StepFunctions:
        return StepFunctions(SQLiteWorkflowHistory(tmp_path / "workflows.db"), REGISTRY,
                             Invoke(), services=Services(MemoryKV()), triggers=triggers)

    async def main() -> None:
        first = node(Recorder())
        first.save("flow", _machine(("P", {"Type": "Pass"})), app="shop",
                   triggers=({"schedule": "rate(1 hour)"},))
        first.save("flow", _machine(("P", {"Type": "Pass"})), app="shop",
                   triggers=({"event": {"type": ["x"]}}, {"http": {"path": "/go"}}))
        again = Recorder()
        second = node(again)
        await second.start()
        assert again.wired == {"flow": [{"event": {"type": ["x"]}}]}
        assert second.route("shop", "POST", "/go") == "flow"
        assert second.route("shop", "GET", "/go") is None
        second.rollback("flow")
        assert again.wired == {"flow": [{"schedule": "rate(1 hour)"}]}
        assert second.route("shop", "POST", "/go") is None
        second.delete_machine("flow")
        assert again.wired == {} and second.history.machine("flow") is None
        await second.stop()
    asyncio.run(main())
