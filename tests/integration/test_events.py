"""The event plane end to end: async invocation, queue triggers, event rules, KV."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import SkiffServer

EVENT_APPS = Path(__file__).resolve().parent.parent / "eventapps"


@pytest.fixture(scope="module")
def server(tmp_path_factory, envs_dir):
    s = SkiffServer(tmp_path_factory.mktemp("home"), [EVENT_APPS], envs_dir)
    yield s
    s.stop()


def kv(server: SkiffServer, app: str, key: str):
    r = server.admin.get(f"/apps/{app}/kv/{key}")
    return r.json()["value"] if r.status_code == 200 else None


def test_kv_from_a_handler(server):
    """Handlers use their KV through skiff.sdk: counters, conditional puts, queries."""
    first = server.http.get("/counter/hit").json()["hits"]
    assert server.http.get("/counter/hit").json()["hits"] == first + 1
    assert server.http.get("/counter/claim").json() == {"claimed": True}
    assert server.http.get("/counter/claim").json() == {"claimed": False, "owner": "first"}
    assert {"hits", "owner"} <= set(server.http.get("/counter/list").json()["keys"])
    assert kv(server, "counter", "hits") == first + 1
    # namespaced: another app does not see counter's keys
    assert server.admin.get("/apps/audit/kv/hits").status_code == 404


def test_async_invocation_retries_then_succeeds(server):
    """An Event invocation answers 202 at once, is retried after failures, and its
    result is fetched by id; the on-success destination gets a record."""
    job = uuid.uuid4().hex[:8]
    r = server.http.post("/flaky/", json={"job": job, "fail": 2},
                         headers={"x-skiff-invocation-type": "Event"})
    assert r.status_code == 202
    inv = r.json()["invocation_id"]
    status = server.wait_for(
        lambda: (s := server.admin.get(f"/invocations/{inv}").json())["status"] == "succeeded"
        and s, "the async invocation to succeed")
    assert status["attempts"] == 3
    assert status["result"]["attempts"] == 3
    ok = server.admin.get("/queues/flaky-ok/messages", params={"limit": 100}).json()
    assert any(json.loads(m["body"])["requestContext"]["requestId"] == inv for m in ok)


def test_async_invocation_exhausts_retries_into_the_failure_destination(server):
    """After maxAttempts the invocation is failed and lands on the on-failure queue."""
    job = uuid.uuid4().hex[:8]
    out = server.admin.post("/apps/flaky/invoke", json={"job": job, "fail": 99},
                            headers={"x-skiff-invocation-type": "Event"})
    assert out.status_code == 202
    inv = out.json()["invocation_id"]
    status = server.wait_for(
        lambda: (s := server.admin.get(f"/invocations/{inv}").json())["status"] == "failed"
        and s, "retries to run out")
    assert status["attempts"] == 3
    assert "attempt 3" in status["error"]
    failed = server.admin.get("/queues/flaky-failed/messages", params={"limit": 100}).json()
    record = next(json.loads(m["body"]) for m in failed
                  if json.loads(m["body"])["requestContext"]["requestId"] == inv)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestPayload"] == {"job": job, "fail": 99}


def test_queue_trigger_partial_batch_failure_and_dlq(server):
    """Only failed records are retried; a poison message lands in the DLQ after
    maxReceiveCount and can be redriven."""
    tag = uuid.uuid4().hex[:6]
    bodies = [f"ok-{tag}-{i}" for i in range(5)] + [f"poison-{tag}"]
    for body in bodies:
        assert server.admin.post("/queues/orders/messages", json={"body": body}).status_code == 202
    server.wait_for(lambda: kv(server, "orders-worker", f"seen:poison-{tag}") == 2,
                    "the poison message to be tried twice")
    dlq = server.wait_for(lambda: [m for m in server.admin.get(
        "/queues/orders-dlq/messages", params={"limit": 100}).json() if tag in m["body"]],
        "the poison message in the DLQ")
    assert dlq[0]["body"] == f"poison-{tag}"
    for body in bodies[:-1]:
        assert kv(server, "orders-worker", f"seen:{body}") == 1  # never retried
    assert server.admin.post("/queues/orders-dlq/redrive").json()["moved"] >= 1
    server.wait_for(lambda: kv(server, "orders-worker", f"seen:poison-{tag}") == 4,
                    "the redriven message to be tried again")


def test_sdk_queue_send_feeds_the_trigger(server):
    """A handler's sdk.queue(...).send reaches the queue's consumer."""
    server.http.get("/counter/enqueue")
    server.wait_for(lambda: kv(server, "orders-worker", 'seen:{"from": "counter"}'),
                    "the message sent by the SDK to be consumed")


def test_event_rules_match_and_fan_out(server):
    """Published CloudEvents reach the rules they match, in CloudEvent or EventBridge
    shape, with the trace context; others are not delivered."""
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    big, small, refund = (str(uuid.uuid4()) for _ in range(3))
    r = server.admin.post("/events", content=json.dumps(
        {"specversion": "1.0", "id": big, "type": "order.placed", "source": "shop",
         "data": {"amount": 250}, "traceparent": trace}),
        headers={"content-type": "application/cloudevents+json"})
    assert r.status_code == 202
    assert r.json()["events"][0]["matched"] == ["audit"]
    # binary mode, below the numeric threshold: no rule matches
    r = server.admin.post("/events", content=json.dumps({"amount": 5}), headers={
        "ce-specversion": "1.0", "ce-id": small, "ce-type": "order.placed",
        "ce-source": "shop", "content-type": "application/json"})
    assert r.json()["events"][0]["matched"] == []
    server.admin.post("/events", content=json.dumps(
        {"specversion": "1.0", "id": refund, "type": "order.refunded", "source": "shop.eu",
         "data": {"amount": 10}}), headers={"content-type": "application/cloudevents+json"})
    got = server.wait_for(lambda: kv(server, "audit", f"ce:{big}"), "the matching event")
    assert got == {"data": {"amount": 250}, "traceparent": trace}
    eb = server.wait_for(lambda: kv(server, "audit", f"eb:{refund}"), "the EventBridge event")
    assert eb == {"detail": {"amount": 10}, "source": "shop.eu"}
    assert kv(server, "audit", f"ce:{small}") is None


def test_invalid_event_is_a_clear_400(server):
    """A CloudEvent without required attributes is refused, naming the attribute."""
    r = server.admin.post("/events", content=b'{"specversion": "1.0", "type": "x"}',
                          headers={"content-type": "application/cloudevents+json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_event"
