"""Tests for __APP_NAME__: run them with `python -m pytest`."""

from pathlib import Path

from skiff.testing import AppClient

APP = Path(__file__).parent


def test_index_links_to_hello():
    with AppClient(APP) as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/hello/world" in response.text


def test_hello():
    with AppClient(APP) as client:
        response = client.get("/hello/Ada")
    assert response.status_code == 200
    assert response.json() == {"message": "Hello, Ada!"}


def test_unknown_route_is_404():
    with AppClient(APP) as client:
        assert client.get("/nope").status_code == 404
