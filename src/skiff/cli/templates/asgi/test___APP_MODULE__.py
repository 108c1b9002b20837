"""Tests for __APP_NAME__: run them with `python -m pytest`."""

from pathlib import Path

from skiff.testing import AppClient

APP = Path(__file__).parent


def test_index():
    with AppClient(APP) as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.json()["app"] == "__APP_NAME__"


def test_hello():
    with AppClient(APP) as client:
        assert client.get("/hello/Ada").json() == {"message": "Hello, Ada!"}


def test_create_item():
    with AppClient(APP) as client:
        response = client.post("/items", json={"name": "apple", "quantity": 3})
    assert response.status_code == 201
    assert response.json() == {"name": "apple", "quantity": 3}


def test_invalid_item_is_422():
    with AppClient(APP) as client:
        response = client.post("/items", json={"name": "", "quantity": 0})
    assert response.status_code == 422
    fields = {error["loc"][-1] for error in response.json()["detail"]}
    assert fields == {"name", "quantity"}


def test_unknown_route_is_404():
    with AppClient(APP) as client:
        assert client.get("/nope").status_code == 404
