"""The saga's apps with skiff.testing: the SDK reaches an in-memory platform."""

from skiff.testing import AppClient
from tests.conftest import EXAMPLES

SAGA = EXAMPLES / "order-saga"


def reserved(order_id: str, amount: float) -> dict:
    return {"specversion": "1.0", "id": f"e-{order_id}", "type": "inventory.reserved",
            "source": "shop.inventory",
            "data": {"order_id": order_id, "sku": "kayak", "qty": 1, "amount": amount}}


def test_payments_charges_once_and_publishes():
    """A charge publishes payment.charged; the same event again charges nothing more."""
    with AppClient(SAGA / "payments") as client:
        assert client.invoke(reserved("o1", 100)) == {"charged": True}
        assert client.invoke(reserved("o1", 100)) == {"charged": True}  # stored result
        assert client.kv.get("payments", "charges").value == 1
        assert [e["type"] for e in client.published] == ["payment.charged"]


def test_payments_declines_over_the_limit():
    """An amount over CARD_LIMIT publishes payment.failed and charges nothing."""
    with AppClient(SAGA / "payments") as client:
        assert client.invoke(reserved("o2", 5000)) == {"charged": False}
        assert client.kv.get("payments", "charges") is None
        assert client.published[0]["data"]["reason"] == "card declined"


def test_orders_http_api_places_an_order():
    """POST / records the order in KV and publishes order.placed."""
    with AppClient(SAGA / "orders") as client:
        r = client.post("/", json={"sku": "kayak", "qty": 1, "amount": 10})
        assert r.status_code == 202
        order_id = r.json()["id"]
        assert client.get(f"/{order_id}").json()["status"] == "placed"
        assert client.published[0]["type"] == "order.placed"
