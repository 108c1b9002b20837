"""The order saga example, end to end through the real bus."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLES, SkiffServer


@pytest.fixture(scope="module")
def shop(tmp_path_factory, envs_dir):
    s = SkiffServer(tmp_path_factory.mktemp("home"), [EXAMPLES / "order-saga"], envs_dir)
    yield s
    s.stop()


def order(shop: SkiffServer, **body) -> dict:
    r = shop.http.post("/orders/", json=body)
    assert r.status_code == 202, r.text
    return r.json()


def settled(shop: SkiffServer, order_id: str, status: str) -> dict:
    return shop.wait_for(lambda: (o := shop.http.get(f"/orders/{order_id}").json())["status"]
                         == status and o, f"order {order_id} to be {status}")


def kv(shop: SkiffServer, app: str, key: str):
    r = shop.admin.get(f"/apps/{app}/kv/{key}")
    return r.json()["value"] if r.status_code == 200 else None


def test_happy_path_runs_every_step(shop):
    """Placed → reserved → paid → fulfilled → notified, each step by its own app."""
    placed = order(shop, sku="kayak", qty=2, amount=450)
    done = settled(shop, placed["id"], "fulfilled")
    assert done["history"] == ["placed", "inventory.reserved", "payment.charged",
                               "order.fulfilled"]
    assert kv(shop, "payments", f"charge:{placed['id']}") == {"amount": 450}
    sent = shop.wait_for(lambda: kv(shop, "notifications", f"sent:{placed['id']}"), "notice")
    assert "on its way" in sent["message"]
    assert kv(shop, "inventory", "stock:kayak") == 8


def test_declined_payment_compensates(shop):
    """A declined card releases the reserved stock and cancels the order."""
    before = kv(shop, "inventory", "stock:paddle")
    placed = order(shop, sku="paddle", qty=3, amount=5000)
    done = settled(shop, placed["id"], "cancelled")
    assert done["history"] == ["placed", "inventory.reserved", "payment.failed",
                               "inventory.released"]
    assert kv(shop, "inventory", "stock:paddle") == (before if before is not None else 10)
    assert kv(shop, "payments", f"charge:{placed['id']}") is None
    sent = shop.wait_for(lambda: kv(shop, "notifications", f"sent:{placed['id']}"), "notice")
    assert "cancelled" in sent["message"]


def test_redelivered_payment_event_charges_once(shop):
    """The same inventory.reserved event published twice is charged once (@idempotent)."""
    placed = order(shop, sku="tent", qty=1, amount=100)
    settled(shop, placed["id"], "fulfilled")
    charges = kv(shop, "payments", "charges")
    event = {"specversion": "1.0", "id": "replay-1", "type": "inventory.reserved",
             "source": "shop.inventory",
             "data": {"order_id": placed["id"], "sku": "tent", "qty": 1, "amount": 100}}
    shop.admin.post("/events", content=json.dumps(event),
                    headers={"content-type": "application/cloudevents+json"})
    shop.wait_for(lambda: not [q for q in shop.admin.get("/queues").json()
                               if q["name"].startswith("skiff:rule:payments")
                               and (q["visible"] or q["in_flight"])], "the replay to be consumed")
    assert kv(shop, "payments", "charges") == charges


def test_bad_order_is_a_400(shop):
    """An order without the required fields is refused with a message."""
    r = shop.http.post("/orders/", json={"sku": "kayak"})
    assert r.status_code == 400
    assert "sku, qty and amount" in r.json()["error"]


def test_reconciliation_job_reports_stuck_orders(shop):
    """The scheduled reconciliation runs (invoked here with the event a schedule sends)."""
    env = {**os.environ, "SKIFF_HOME": str(shop.home)}
    event = {"version": "0", "id": "fire-1", "detail-type": "Scheduled Event",
             "source": "skiff.scheduler", "detail": {}}
    out = subprocess.run([sys.executable, "-m", "skiff", "invoke", "orders", "--data",
                          json.dumps(event)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["checked"] >= 1
    assert result["stuck"] == []
