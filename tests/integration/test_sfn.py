"""Step Functions on a real server: boto3's stepfunctions client against /_skiff/sfn,
tasks that are real apps, and a kill -9 mid-execution that resumes where it was."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest

from tests.conftest import SkiffServer

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402

APPS = Path(__file__).resolve().parent.parent / "sfnapps"

THREE_TASKS = {
    "Comment": "three tasks, one per Resource form",
    "StartAt": "One",
    "States": {
        "One": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "sfn-step",
                               "Payload": {"step": "one", "token.$": "$$.Task.Token",
                                           "input.$": "$"}},
                "ResultSelector": {"step.$": "$.Payload.step"}, "ResultPath": "$.one",
                "Next": "Two"},
        "Two": {"Type": "Task",
                "Resource": "arn:aws:lambda:us-east-1:123456789012:function:sfn-step",
                "Parameters": {"step": "two", "hold.$": "$.hold", "token.$": "$$.Task.Token"},
                "ResultPath": "$.two", "Next": "Three"},
        "Three": {"Type": "Task", "Resource": "skiff:app/sfn-step",
                  "Parameters": {"step": "three", "token.$": "$$.Task.Token"},
                  "ResultSelector": {"step.$": "$.step"}, "ResultPath": "$.three",
                  "End": True},
    },
}


def client(server: SkiffServer):
    """boto3's client, sending the admin token as a bearer instead of its SigV4
    signature (what the README shows), without the sync- host prefix."""
    token = (server.home / "admin-token").read_text().strip()
    c = boto3.client("stepfunctions", endpoint_url=f"{server.url}/_skiff/sfn",
                     region_name="us-east-1", aws_access_key_id="skiff",
                     aws_secret_access_key="unused",
                     config=Config(inject_host_prefix=False, retries={"max_attempts": 1}))

    def bearer(request, **_):  # noqa: ANN001
        request.headers["Authorization"] = f"Bearer {token}"

    c.meta.events.register("before-send.states.*", bearer)
    return c


def kv(server: SkiffServer, key: str, app: str = "sfn-step"):
    r = server.admin.get(f"/apps/{app}/kv/{key}")
    return r.json()["value"] if r.status_code == 200 else None


def test_kill_9_mid_execution_resumes_and_runs_completed_tasks_once(tmp_path, envs_dir):
    """A 3-Task execution is killed (kill -9) while its second task runs: after the
    restart it finishes; the first task is not run again, the second runs again with
    the same token and request id (its @idempotent side effect happens once)."""
    home = tmp_path / "home"
    server = SkiffServer(home, [APPS], envs_dir)
    try:
        sfn = client(server)
        arn = sfn.create_state_machine(name="three", definition=json.dumps(THREE_TASKS),
                                       roleArn="arn:aws:iam::1:role/x")["stateMachineArn"]
        ex = sfn.start_execution(stateMachineArn=arn, name="crash-1",
                                 input=json.dumps({"hold": True}))["executionArn"]
        server.wait_for(lambda: kv(server, "runs:two") == 1, "the second task to run")
        assert kv(server, "effects:two") == 1
    finally:
        server.stop(signal.SIGKILL)

    again = SkiffServer(home, [], envs_dir)
    try:
        sfn = client(again)
        assert sfn.describe_execution(executionArn=ex)["status"] == "RUNNING"
        again.wait_for(lambda: kv(again, "runs:two") == 2, "the second task to run again")
        again.admin.put("/apps/sfn-step/kv/release", content=b"true")
        again.wait_for(lambda: sfn.describe_execution(executionArn=ex)["status"] != "RUNNING",
                       "the execution to finish")
        done = sfn.describe_execution(executionArn=ex)
        assert done["status"] == "SUCCEEDED", done
        out = json.loads(done["output"])
        assert out["one"] == {"step": "one"} and out["three"] == {"step": "three"}
        assert out["two"]["step"] == "two"
        assert (kv(again, "runs:one"), kv(again, "runs:two"), kv(again, "runs:three")) == (1, 2, 1)
        assert kv(again, "effects:two") == 1  # the re-run found its idempotency record
        history = sfn.get_execution_history(executionArn=ex)["events"]
        tokens = [json.loads(e["taskScheduledEventDetails"]["parameters"])
                  for e in history if e["type"] == "TaskScheduled"]
        assert len(tokens) == 3  # Two was scheduled once: the restart did not re-schedule it
        assert out["two"]["request"] == str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                       tokens[1]["token"]))
    finally:
        again.stop()
