"""Hostile input to workflows: a task whose result is nested 100,000 levels deep, and a
Map over a huge array. Each ends its execution with a clear error; the platform stays
up and a neighbour app is served throughout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import SkiffServer
from tests.hostile.conftest import neighbour_watch
from tests.integration.test_sfn import client

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")
pytest.importorskip("boto3")

APPS = Path(__file__).parent / "workflows_apps"
ARN = "arn:aws:states:local:000000000000:stateMachine:"


@pytest.fixture(scope="module")
def server(tmp_path_factory, envs_dir):
    s = SkiffServer(tmp_path_factory.mktemp("home"), [APPS], envs_dir)
    yield s
    s.stop()


def _finished(server: SkiffServer, sfn, arn: str) -> dict:
    server.wait_for(lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING",
                    f"{arn} to end", timeout=60)
    return sfn.describe_execution(executionArn=arn)


def test_a_deeply_nested_task_result_fails_the_task(server):
    """The result was parsed recursively: a RecursionError killed the task's coroutine
    and the execution stayed RUNNING for ever. Now it fails with States.TaskFailed."""
    sfn = client(server)
    with neighbour_watch(server):
        arn = sfn.start_execution(stateMachineArn=ARN + "nest")["executionArn"]
        done = _finished(server, sfn, arn)
    assert (done["status"], done["error"]) == ("FAILED", "States.TaskFailed")
    assert "nested" in done["cause"]
    assert server.http.get("/neighbour/").status_code == 200


def test_a_map_over_a_huge_array_is_bounded_by_the_history_limit(server):
    """A Map of 50,000 items would write 150,000 events: it stops at the history limit
    (States.Runtime, as AWS fails it), while the neighbour is served."""
    sfn = client(server)
    with neighbour_watch(server):
        arn = sfn.start_execution(stateMachineArn=ARN + "flood",
                                  input=json.dumps({"items": [0] * 50_000}))["executionArn"]
        done = _finished(server, sfn, arn)
    assert (done["status"], done["error"]) == ("FAILED", "States.Runtime")
    assert "maximum number of history events (25000)" in done["cause"]
    events = sfn.get_execution_history(executionArn=arn, maxResults=1, reverseOrder=True)
    assert events["events"][0]["type"] == "ExecutionFailed"
