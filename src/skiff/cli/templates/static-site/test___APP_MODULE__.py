"""Tests for __APP_NAME__: run them with `python -m pytest`."""

from pathlib import Path

from skiff.testing import AppClient

APP = Path(__file__).parent


def test_index_is_served_at_the_root():
    with AppClient(APP) as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>__APP_NAME__</title>" in response.text


def test_stylesheet_is_served():
    with AppClient(APP) as client:
        response = client.get("/style.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")


def test_missing_file_is_404():
    with AppClient(APP) as client:
        assert client.get("/missing.html").status_code == 404
