"""Tests for __APP_NAME__: run them with `python -m pytest`."""

import hashlib
import hmac
import json
from pathlib import Path

from skiff.testing import AppClient

APP = Path(__file__).parent
SECRET = "test-secret"


def signed(client, body, secret=SECRET):
    data = json.dumps(body).encode()
    signature = "sha256=" + hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
    return client.post("/", data=data, headers={"content-type": "application/json",
                                                "x-signature-256": signature})


def test_a_signed_delivery_is_accepted():
    with AppClient(APP, env={"WEBHOOK_SECRET": SECRET}) as client:
        r = signed(client, {"action": "opened"})
    assert r.status_code == 202 and r.json() == {"accepted": True, "keys": ["action"]}


def test_a_wrong_or_missing_signature_is_refused():
    with AppClient(APP, env={"WEBHOOK_SECRET": SECRET}) as client:
        assert signed(client, {"a": 1}, secret="guess").status_code == 401
        assert client.post("/", json={"a": 1}).status_code == 401
        assert client.get("/").status_code == 405
