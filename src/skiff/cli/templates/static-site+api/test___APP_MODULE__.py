"""Tests for __APP_NAME__: run them with `python -m pytest`."""

from pathlib import Path

from skiff.testing import AppClient

APP = Path(__file__).parent


def test_the_page_is_served_at_the_root():
    with AppClient(APP) as client:
        r = client.get("/")
    assert r.status_code == 200 and "<title>__APP_NAME__</title>" in r.text


def test_notes_are_added_and_listed():
    with AppClient(APP) as client:
        added = client.post("/api/notes", json={"text": "buy milk"})
        assert added.status_code == 201
        assert client.get("/api/notes").json() == [added.json()]
        assert client.post("/api/notes", json={}).status_code == 400
