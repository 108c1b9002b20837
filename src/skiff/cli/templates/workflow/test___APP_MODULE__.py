"""Tests for __APP_NAME__: run them with `python -m pytest` (no server needed)."""

import json
from pathlib import Path

import pytest

from skiff.testing import AppClient
from skiff.workflows import validate

APP = Path(__file__).parent
DEFINITION = json.loads((APP / "workflow" / "definition.asl.json").read_text())


def test_the_definition_is_valid_and_calls_this_app():
    assert validate(DEFINITION) == []
    tasks = [s for s in DEFINITION["States"].values() if s["Type"] == "Task"]
    assert {t["Resource"] for t in tasks} == {"skiff:app/__APP_NAME__"}


def test_each_step_the_definition_names_runs():
    with AppClient(APP) as client:
        assert client.invoke({"step": "check", "order": {"id": 1, "qty": 2}}) == {"ok": True}
        assert client.invoke({"step": "fulfil", "order": {"id": 1, "qty": 2}}) == {
            "shipped": 2, "id": 1}


def test_a_refused_order_raises_the_error_the_catch_names():
    catch = DEFINITION["States"]["Check"]["Catch"][0]["ErrorEquals"]
    with AppClient(APP) as client, pytest.raises(Exception) as info:
        client.invoke({"step": "check", "order": {"id": 2, "qty": 0}})
    assert type(info.value).__name__ in catch, info.value
