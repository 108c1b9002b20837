"""Tests for __APP_NAME__: run them with `python -m pytest`."""

from pathlib import Path

from skiff.testing import AppClient

APP = Path(__file__).parent


def test_index_lists_the_routes():
    with AppClient(APP) as client:
        response = client.get("/")
    assert response.status_code == 200
    assert "GET /hello" in response.json()["routes"]


def test_hello_greets_by_name():
    with AppClient(APP) as client:
        response = client.get("/hello", query={"name": "Ada"})
    assert response.json() == {"message": "Hello, Ada!"}


def test_echo_returns_the_body():
    with AppClient(APP) as client:
        response = client.post("/echo", json={"answer": 42})
    assert response.status_code == 200
    assert response.json() == {"echo": {"answer": 42}}


def test_echo_rejects_bad_json():
    with AppClient(APP) as client:
        response = client.post("/echo", data=b"{oops", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_unknown_route_is_404():
    with AppClient(APP) as client:
        assert client.get("/nope").status_code == 404


def test_handler_can_be_invoked_with_a_raw_event():
    event = {
        "version": "2.0",
        "rawPath": "/missing",
        "rawQueryString": "",
        "headers": {},
        "requestContext": {"http": {"method": "GET", "path": "/missing"}},
        "isBase64Encoded": False,
    }
    with AppClient(APP) as client:
        result = client.invoke(event)
    assert result["statusCode"] == 404
