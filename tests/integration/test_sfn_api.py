"""The Step Functions API with boto3 against one real server: state machines deployed
from skiff.yaml (kind: StateMachine), executions, histories in AWS's shapes, errors as
boto3's exception classes, and the order saga with Catch-driven compensation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, SkiffServer
from tests.integration.test_sfn import APPS, THREE_TASKS, client, kv

boto3 = pytest.importorskip("boto3")


@pytest.fixture(scope="module")
def server(tmp_path_factory, envs_dir):
    s = SkiffServer(tmp_path_factory.mktemp("home"), [APPS, EXAMPLES / "order-saga-sfn"],
                    envs_dir)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def sfn(server):
    return client(server)


def finished(server: SkiffServer, sfn, arn: str) -> dict:
    server.wait_for(lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING",
                    f"execution {arn} to finish")
    return sfn.describe_execution(executionArn=arn)


def test_state_machines_from_skiff_yaml_are_listed(sfn):
    """Every kind: StateMachine of the deployed directories is a machine, with its type
    and its definition (inline or from definitionFile)."""
    machines = {m["name"]: m for m in sfn.list_state_machines()["stateMachines"]}
    assert {"waiter", "echo-express", "order-saga"} <= set(machines)
    assert machines["echo-express"]["type"] == "EXPRESS"
    saga = sfn.describe_state_machine(stateMachineArn=machines["order-saga"]["stateMachineArn"])
    assert saga["type"] == "STANDARD" and json.loads(saga["definition"])["StartAt"] == "Reserve"


def test_an_execution_runs_and_its_history_has_aws_shapes(server, sfn):
    """StartExecution runs three tasks to SUCCEEDED; GetExecutionHistory answers AWS's
    event types with *EventDetails and JSON-text inputs and outputs."""
    arn = sfn.create_state_machine(name="linear", definition=json.dumps(THREE_TASKS),
                                   roleArn="arn:aws:iam::1:role/x")["stateMachineArn"]
    ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"hold": False}))
    done = finished(server, sfn, ex["executionArn"])
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["input"]) == {"hold": False}
    events = sfn.get_execution_history(executionArn=ex["executionArn"])["events"]
    types = [e["type"] for e in events]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"
    assert types.count("TaskScheduled") == types.count("TaskSucceeded") == 3
    entered = [e for e in events if e["type"] == "TaskStateEntered"]
    assert [e["stateEnteredEventDetails"]["name"] for e in entered] == ["One", "Two", "Three"]
    ok = next(e for e in events if e["type"] == "TaskSucceeded")
    assert ok["taskSucceededEventDetails"]["resourceType"] == "lambda"
    assert json.loads(ok["taskSucceededEventDetails"]["output"])["StatusCode"] == 200
    assert json.loads(events[-1]["executionSucceededEventDetails"]["output"])["three"]
    listed = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert [x["executionArn"] for x in listed] == [ex["executionArn"]]
    page = sfn.get_execution_history(executionArn=ex["executionArn"], maxResults=2,
                                     reverseOrder=True)
    assert page["events"][0]["type"] == "ExecutionSucceeded" and page["nextToken"]


def test_express_runs_synchronously(sfn):
    """StartSyncExecution on an EXPRESS machine answers with the execution's output."""
    arn = "arn:aws:states:local:000000000000:stateMachine:echo-express"
    out = sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps({"hi": "there"}))
    assert out["status"] == "SUCCEEDED" and json.loads(out["output"]) == {"hi": "there"}
    with pytest.raises(sfn.exceptions.StateMachineTypeNotSupported):
        sfn.start_sync_execution(
            stateMachineArn="arn:aws:states:local:000000000000:stateMachine:waiter")


def test_stop_execution_aborts_a_waiting_execution(server, sfn):
    """StopExecution of an execution in a Wait state ends it ABORTED with the error given;
    a second start with the same name and input is the same execution."""
    arn = "arn:aws:states:local:000000000000:stateMachine:waiter"
    ex = sfn.start_execution(stateMachineArn=arn, name="nap-1", input="{}")
    assert sfn.start_execution(stateMachineArn=arn, name="nap-1",
                               input="{}")["executionArn"] == ex["executionArn"]
    with pytest.raises(sfn.exceptions.ExecutionAlreadyExists):
        sfn.start_execution(stateMachineArn=arn, name="nap-1", input='{"other": 1}')
    assert sfn.describe_execution(executionArn=ex["executionArn"])["status"] == "RUNNING"
    sfn.stop_execution(executionArn=ex["executionArn"], error="Operator", cause="enough")
    done = sfn.describe_execution(executionArn=ex["executionArn"])
    assert (done["status"], done["error"], done["cause"]) == ("ABORTED", "Operator", "enough")
    assert [x["name"] for x in sfn.list_executions(stateMachineArn=arn,
                                                   statusFilter="ABORTED")["executions"]] == ["nap-1"]


def test_bad_requests_are_aws_errors(sfn):
    """Unknown executions and machines, invalid definitions (with their diagnostics) and a
    task naming an app that is not deployed are refused with AWS's error types."""
    with pytest.raises(sfn.exceptions.ExecutionDoesNotExist):
        sfn.describe_execution(executionArn="arn:aws:states:local:000000000000:execution:x:y")
    with pytest.raises(sfn.exceptions.StateMachineDoesNotExist):
        sfn.start_execution(stateMachineArn="arn:aws:states:local:000000000000:stateMachine:no")
    with pytest.raises(sfn.exceptions.StateMachineDoesNotExist):
        sfn.list_executions(stateMachineArn="arn:aws:states:local:000000000000:stateMachine:no")
    bad = {"StartAt": "Nope", "States": {"A": {"Type": "Pass", "End": True}}}
    with pytest.raises(sfn.exceptions.InvalidDefinition):
        sfn.create_state_machine(name="bad", definition=json.dumps(bad), roleArn="r")
    verdict = sfn.validate_state_machine_definition(definition=json.dumps(bad))
    assert verdict["result"] == "FAIL" and verdict["diagnostics"][0]["code"]
    ghost = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "skiff:app/ghost",
                                              "End": True}}}
    with pytest.raises(sfn.exceptions.InvalidDefinition, match="ghost"):
        sfn.create_state_machine(name="ghost", definition=json.dumps(ghost), roleArn="r")
    assert sfn.validate_state_machine_definition(
        definition=json.dumps(THREE_TASKS))["result"] == "OK"


def _pack(directory: Path) -> bytes:
    from skiff.cli.client import pack

    return pack(directory)


def test_a_state_machine_directory_deploys_and_rolls_back(server, sfn, tmp_path):
    """`skiff deploy` of a kind: StateMachine directory makes a new revision; an invalid
    definition or a task naming a missing app is refused with the diagnostics; rollback
    makes the earlier revision current."""
    d = tmp_path / "m"
    d.mkdir()

    def deploy(definition: dict):
        (d / "m.asl.json").write_text(json.dumps(definition))
        (d / "skiff.yaml").write_text("apiVersion: skiff.dev/v1\nkind: StateMachine\n"
                                      "metadata: {name: versioned}\n"
                                      "spec: {definitionFile: m.asl.json}\n")
        return server.admin.post("/apps", content=_pack(d),
                                 headers={"content-type": "application/gzip"})

    first = deploy({"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": 1, "End": True}}})
    assert first.status_code == 201, first.text
    second = deploy({"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": 2,
                                                      "End": True}}})
    assert second.json()["revision"] != first.json()["revision"]
    refused = deploy({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Gone"}}})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_definition"
    assert refused.json()["error"]["diagnostics"][0]["location"].startswith("/States/A")
    missing = deploy({"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "arn:aws:lambda:local:0:function:nobody", "End": True}}})
    assert missing.status_code == 400 and "nobody" in missing.json()["error"]["message"]
    arn = "arn:aws:states:local:000000000000:stateMachine:versioned"
    assert sfn.start_sync_execution is not None
    back = server.admin.post("/apps/versioned/rollback")
    assert back.status_code == 200 and back.json()["revision"] == first.json()["revision"]
    ex = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    assert json.loads(finished(server, sfn, ex)["output"]) == 1


SAGA = "arn:aws:states:local:000000000000:stateMachine:order-saga"


def test_the_order_saga_ships_a_paid_order(server, sfn):
    """Reserve, charge, ship: the order succeeds with its shipment, stock went down."""
    order = {"order_id": "o-ok", "sku": "kayak", "qty": 2, "amount": 450}
    ex = sfn.start_execution(stateMachineArn=SAGA, input=json.dumps(order))["executionArn"]
    done = finished(server, sfn, ex)
    assert done["status"] == "SUCCEEDED", done
    out = json.loads(done["output"])
    assert out["shipment"] == {"tracking": "TRK-o-ok"} and out["payment"] == {"charged": 450}
    assert kv(server, "stock:kayak", app="sfn-inventory") == 8
    assert kv(server, "charge:o-ok", app="sfn-payments") == {"amount": 450}


def test_a_declined_payment_is_compensated(server, sfn):
    """A declined charge is caught: the stock is released and the order ends in
    OrderCancelled; nothing is charged."""
    before = kv(server, "stock:canoe", app="sfn-inventory")
    order = {"order_id": "o-declined", "sku": "canoe", "qty": 3, "amount": 5000}
    ex = sfn.start_execution(stateMachineArn=SAGA, input=json.dumps(order))["executionArn"]
    done = finished(server, sfn, ex)
    assert (done["status"], done["error"]) == ("FAILED", "OrderCancelled"), done["cause"]
    assert kv(server, "stock:canoe", app="sfn-inventory") == (before or 10)
    assert kv(server, "charge:o-declined", app="sfn-payments") is None
    events = sfn.get_execution_history(executionArn=ex)["events"]
    failed = next(e for e in events if e["type"] == "TaskFailed")
    assert failed["taskFailedEventDetails"]["error"] == "PaymentDeclined"
    entered = [e["stateEnteredEventDetails"]["name"] for e in events
               if "stateEnteredEventDetails" in e]
    assert entered == ["Reserve", "Charge", "Release", "Cancelled"]


def test_the_cli_starts_describes_lists_and_validates(server, tmp_path):
    """`skiff sfn start --sync | describe | history | ls | validate` over the protocol."""
    def skiff(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "skiff", "sfn", *args, "--url", server.url],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "SKIFF_ADMIN_TOKEN": (
                                  server.home / "admin-token").read_text().strip()})

    ran = skiff("start", "echo-express", '{"n": 1}', "--sync")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(json.loads(ran.stdout)["output"]) == {"n": 1}
    started = skiff("start", "order-saga", json.dumps(
        {"order_id": "o-cli", "sku": "paddle", "qty": 1, "amount": 10}), "--name", "cli-1")
    assert started.returncode == 0, started.stderr
    arn = started.stdout.strip()
    assert arn.endswith(":order-saga:cli-1")
    server.wait_for(lambda: '"SUCCEEDED"' in skiff("describe", arn).stdout, "the saga")
    assert "ExecutionSucceeded" in skiff("history", arn).stdout
    assert "order-saga" in skiff("ls").stdout
    assert "cli-1" in skiff("ls", "order-saga").stdout
    bad = tmp_path / "bad.asl.json"
    bad.write_text('{"StartAt": "X", "States": {}}')
    checked = skiff("validate", str(bad))
    assert checked.returncode == 1 and "ERROR" in checked.stdout
    missing = skiff("describe", "arn:aws:states:local:000000000000:execution:order-saga:none")
    assert missing.returncode == 1 and "ExecutionDoesNotExist" in missing.stderr


CALLBACK = {"StartAt": "Ask", "States": {"Ask": {
    "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
    "Parameters": {"FunctionName": "sfn-step",
                   "Payload": {"step": "ask", "token.$": "$$.Task.Token"}},
    "HeartbeatSeconds": 3600, "End": True}}}


def test_callback_tasks_wait_for_send_task_success_or_failure(server, sfn):
    """A .waitForTaskToken task invokes its app with the token, then waits: a heartbeat
    keeps it, SendTaskSuccess ends it with the output given, SendTaskFailure with the
    error given; an unknown token is TaskDoesNotExist."""
    arn = sfn.create_state_machine(name="callback", definition=json.dumps(CALLBACK),
                                   roleArn="r")["stateMachineArn"]

    def waiting(name: str) -> tuple[str, str]:
        ex = sfn.start_execution(stateMachineArn=arn, name=name)["executionArn"]
        scheduled = server.wait_for(lambda: [e for e in sfn.get_execution_history(
            executionArn=ex)["events"] if e["type"] == "TaskScheduled"], "the task")
        token = json.loads(scheduled[0]["taskScheduledEventDetails"]["parameters"])
        return ex, token["Payload"]["token"]

    ok, token = waiting("approve")
    server.wait_for(lambda: kv(server, "runs:ask") == 1, "the app to get the token")
    sfn.send_task_heartbeat(taskToken=token)
    assert sfn.describe_execution(executionArn=ok)["status"] == "RUNNING"
    sfn.send_task_success(taskToken=token, output=json.dumps({"approved": True}))
    done = finished(server, sfn, ok)
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"approved": True}
    with pytest.raises(sfn.exceptions.TaskDoesNotExist):
        sfn.send_task_success(taskToken=token, output="{}")  # answered already
    no, token = waiting("reject")
    sfn.send_task_failure(taskToken=token, error="Rejected", cause="by the test")
    done = finished(server, sfn, no)
    assert (done["status"], done["error"], done["cause"]) == ("FAILED", "Rejected",
                                                                "by the test")
