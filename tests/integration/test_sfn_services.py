"""State machines on Skiff's own services, on one real server: a machine of app svc-shop
keeps KV, sends to its app's queue and publishes events; it starts from an event rule, a
queue message and the app's own skiff.sdk call; what it may not reach of app svc-bank
(a queue, a machine) is refused at deploy and from the SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SkiffServer
from tests.integration.test_sfn import client
from tests.integration.test_sfn_api import _pack

pytest.importorskip("boto3")

APPS = Path(__file__).resolve().parent.parent / "sfnservices"
FLOW = "arn:aws:states:local:000000000000:stateMachine:shop-flow"


@pytest.fixture(scope="module")
def server(tmp_path_factory, envs_dir):
    s = SkiffServer(tmp_path_factory.mktemp("home"), [APPS], envs_dir)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def sfn(server):
    return client(server)


def kv(server: SkiffServer, key: str):
    r = server.admin.get(f"/apps/svc-shop/kv/{key}")
    return r.json()["value"] if r.status_code == 200 else None


def succeeded(server: SkiffServer, sfn, count: int) -> list[dict]:  # noqa: ANN001
    """Wait until ``count`` executions of shop-flow have succeeded; their descriptions."""
    def done() -> list[dict]:
        rows = sfn.list_executions(stateMachineArn=FLOW, statusFilter="SUCCEEDED")["executions"]
        return rows if len(rows) >= count else []
    rows = server.wait_for(done, f"{count} executions of shop-flow")
    return [sfn.describe_execution(executionArn=r["executionArn"]) for r in rows]


def invoke(server: SkiffServer, app: str, event: dict) -> dict:
    r = server.admin.post(f"/apps/{app}/invoke", content=json.dumps(event))
    assert r.status_code == 200, r.text
    return r.json()


def test_an_event_a_queue_message_a_route_and_the_sdk_each_start_one_execution(server, sfn):
    """A published shop.order, a message on shop-inbox, POST /svc-shop/checkout and
    sdk.workflows.start each start an execution; each counted itself in svc-shop's KV,
    kept its input there, and sent it to shop-orders."""
    published = server.admin.post("/events", content=json.dumps({
        "specversion": "1.0", "id": "order-1", "type": "shop.order", "source": "tests",
        "data": {"order": 1}}), headers={"content-type": "application/cloudevents+json"})
    assert published.status_code == 202, published.text
    assert "statemachine:shop-flow" in published.json()["events"][0]["matched"]
    sent = server.admin.post("/queues/shop-inbox/messages", json={"body": {"order": 2}})
    assert sent.status_code == 202, sent.text
    started = invoke(server, "svc-shop", {"machine": "shop-flow", "input": {"order": 3},
                                          "name": "from-the-app"})
    assert started["status"] == "RUNNING" and started["name"] == "from-the-app"
    routed = server.http.post("/svc-shop/checkout", json={"order": 4})
    assert routed.status_code == 200, routed.text
    assert routed.json()["executionArn"].startswith("arn:aws:states:local:")
    bad = server.http.post("/svc-shop/checkout", content=b"{not json")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "bad_request")
    runs = succeeded(server, sfn, 4)
    inputs = {r["name"]: json.loads(r["input"]) for r in runs}
    assert inputs["from-the-app"] == {"order": 3}
    by_event = [i for i in inputs.values() if i.get("type") == "shop.order"]
    assert [e["data"] for e in by_event] == [{"order": 1}]
    by_queue = [i for i in inputs.values() if "Records" in i]
    assert [json.loads(i["Records"][0]["body"]) for i in by_queue] == [{"order": 2}]
    assert [i["order"] for i in inputs.values() if i.get("order") == 4] == [4]
    assert kv(server, "runs") == 4
    kept = kv(server, "last:from-the-app")
    assert kept["order"] == 3 and kept["runs"]["value"] in (1, 2, 3, 4)
    bodies = [json.loads(m["body"]) for m in
              server.admin.get("/queues/shop-orders/messages?limit=10").json()]
    assert len(bodies) == 4 and sorted(b["runs"]["value"] for b in bodies) == [1, 2, 3, 4]
    assert sorted(b["order"] for b in bodies if "order" in b) == [3, 4]
    described = invoke(server, "svc-shop", {"describe": started["execution_arn"]})
    assert described["status"] == "SUCCEEDED" and described["output"]["sent"]["id"]


def test_an_app_cannot_start_or_read_another_apps_machine(server):
    """svc-shop asking for bank-flow (svc-bank's) gets state_machine_not_found: the same
    answer as for a machine that does not exist."""
    refused = invoke(server, "svc-shop", {"machine": "bank-flow", "input": {}})
    assert refused["error"] == "state_machine_not_found"
    assert invoke(server, "svc-shop", {"machine": "nothing-here"})["error"] == \
        "state_machine_not_found"


@pytest.mark.parametrize(("spec", "status", "code", "says"), [
    ({"app": "svc-shop", "definition": {"StartAt": "S", "States": {"S": {
        "Type": "Task", "Resource": "skiff:queue/bank-ledger", "End": True}}}},
     400, "invalid_definition", "belongs to app svc-bank"),
    ({"app": "svc-shop", "definition": {"StartAt": "S", "States": {"S": {
        "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
        "Parameters": {"StateMachineArn": "bank-flow"}, "End": True}}}},
     400, "invalid_definition", "starts only machines of its own app"),
    ({"definition": {"StartAt": "S", "States": {"S": {
        "Type": "Task", "Resource": "skiff:kv/get", "Parameters": {"key": "k"},
        "End": True}}}},
     400, "invalid_definition", "set spec.app"),
    ({"app": "svc-shop", "triggers": [{"queue": "bank-ledger"}],
      "definition": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}},
     403, "queue_forbidden", "not a queue of its app svc-shop but of app svc-bank"),
    ({"app": "svc-shop", "triggers": [{"http": {"path": "/checkout"}}],
      "definition": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}},
     409, "route_conflict", "starts state machine shop-flow already"),
    ({"app": "svc-nobody",
      "definition": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}},
     404, "app_not_found", "not deployed"),
])
def test_reaching_another_apps_queue_or_machine_is_refused_at_deploy(server, tmp_path, spec,  # noqa: ANN001
                                                                     status, code, says):
    d = tmp_path / "thief"
    d.mkdir()
    (d / "skiff.yaml").write_text(json.dumps({
        "apiVersion": "skiff.dev/v1", "kind": "StateMachine",
        "metadata": {"name": "thief"}, "spec": spec}))
    r = server.admin.post("/apps", content=_pack(d), headers={"content-type": "application/gzip"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and says in error["message"], error
    assert client(server).list_state_machines()["stateMachines"] and \
        "thief" not in [m["name"] for m in client(server).list_state_machines()["stateMachines"]]


def test_the_admin_api_shows_machines_and_each_states_duration(server, sfn):
    """GET /sfn/machines names each machine's app and triggers; GET /sfn/executions/ARN
    gives every state an execution entered, with its duration; an unknown ARN is 404."""
    machines = {m["name"]: m for m in server.admin.get("/sfn/machines").json()}
    assert machines["shop-flow"]["app"] == "svc-shop"
    assert {"http": {"path": "/checkout"}} in machines["shop-flow"]["triggers"]
    ex = sfn.start_execution(stateMachineArn=FLOW, input=json.dumps({"order": 9}))
    server.wait_for(lambda: sfn.describe_execution(
        executionArn=ex["executionArn"])["status"] == "SUCCEEDED", "the execution")
    listed = server.admin.get("/sfn/executions", params={"machine": "shop-flow"}).json()
    assert ex["executionArn"] in [x["arn"] for x in listed]
    got = server.admin.get(f"/sfn/executions/{ex['executionArn']}").json()
    assert got["status"] == "SUCCEEDED" and got["duration_ms"] >= 0
    assert [s["name"] for s in got["states"]] == ["Remember", "Keep", "Send", "Tell"]
    assert all(s["status"] == "EXITED" and s["duration_ms"] >= 0 for s in got["states"])
    missing = server.admin.get("/sfn/executions/arn:aws:states:local:0:execution:x:y")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404,
                                                                      "execution_not_found")


def test_skiff_sfn_rm_deletes_a_machine_and_its_triggers(server, sfn, tmp_path):
    """A machine deployed with an http route is gone after `skiff sfn rm`, and so is
    its route (the app answers the path itself again)."""
    d = tmp_path / "gone"
    d.mkdir()
    (d / "skiff.yaml").write_text(json.dumps({
        "apiVersion": "skiff.dev/v1", "kind": "StateMachine", "metadata": {"name": "gone"},
        "spec": {"app": "svc-shop", "triggers": [{"http": {"path": "/gone"}}],
                 "definition": {"StartAt": "P", "States": {"P": {"Type": "Pass",
                                                                "End": True}}}}}))
    r = server.admin.post("/apps", content=_pack(d), headers={"content-type": "application/gzip"})
    assert r.status_code == 201, r.text
    assert "executionArn" in server.http.post("/svc-shop/gone", json={}).json()
    token = (server.home / "admin-token").read_text().strip()
    done = subprocess.run([sys.executable, "-m", "skiff", "sfn", "rm", "gone", "--url",
                           server.url], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SKIFF_ADMIN_TOKEN": token})
    assert done.returncode == 0, done.stderr
    assert "gone" not in [m["name"] for m in sfn.list_state_machines()["stateMachines"]]
    after = server.http.post("/svc-shop/gone", content=b"{}")
    assert after.json() == {"answered_by": "svc-shop"}  # the app's own handler again


def test_deleting_an_app_deletes_the_machines_bound_to_it(server, sfn, tmp_path):
    """A later app of the same name (perhaps another owner's) inherits no machine that
    acts as it: `skiff rm APP` deletes the machines whose spec.app it is."""
    app = Path(__file__).resolve().parent.parent / "sfnservices-later" / "svc-tmp"
    r = server.admin.post("/apps", content=_pack(app), headers={"content-type": "application/gzip"})
    assert r.status_code == 201, r.text
    d = tmp_path / "tmp-flow"
    d.mkdir()
    (d / "skiff.yaml").write_text(json.dumps({
        "apiVersion": "skiff.dev/v1", "kind": "StateMachine", "metadata": {"name": "tmp-flow"},
        "spec": {"app": "svc-tmp", "definition": {"StartAt": "K", "States": {"K": {
            "Type": "Task", "Resource": "skiff:kv/get", "Parameters": {"key": "k"},
            "End": True}}}}}))
    r = server.admin.post("/apps", content=_pack(d), headers={"content-type": "application/gzip"})
    assert r.status_code == 201, r.text
    gone = server.admin.delete("/apps/svc-tmp", params={"purge": "true"})
    assert gone.status_code == 200 and gone.json()["state_machines"] == ["tmp-flow"]
    assert "tmp-flow" not in [m["name"] for m in sfn.list_state_machines()["stateMachines"]]


def test_policies_of_kind_state_machine_judge_machine_deploys(server, tmp_path):
    """A policy with kinds [StateMachine] runs on a machine's deploy (a deny refuses it
    with 403 policy_denied naming the policy); app policies (the default kind) do not."""
    rule = ("id: express-only\nkinds: [StateMachine]\nmessage: machines here must be EXPRESS\n"
            "expression: input.manifest.spec.type == 'EXPRESS'\n")
    applied = server.admin.post("/policies", json={"text": rule})
    assert applied.status_code in (200, 201), applied.text
    try:
        d = tmp_path / "judged"
        d.mkdir()
        body = {"apiVersion": "skiff.dev/v1", "kind": "StateMachine",
                "metadata": {"name": "judged"},
                "spec": {"app": "svc-shop", "definition": {
                    "StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}}}
        (d / "skiff.yaml").write_text(json.dumps(body))
        r = server.admin.post("/apps", content=_pack(d),
                              headers={"content-type": "application/gzip"})
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "policy_denied"
        assert "express-only" in r.json()["error"]["message"]
        body["spec"]["type"] = "EXPRESS"
        (d / "skiff.yaml").write_text(json.dumps(body))
        r = server.admin.post("/apps", content=_pack(d),
                              headers={"content-type": "application/gzip"})
        assert r.status_code == 201, r.text
    finally:
        server.admin.delete("/policies/express-only")
