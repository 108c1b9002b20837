"""The example apps and the ``skiff new`` templates, run in-process.

The examples are what the docs show, so each one is exercised here through
``skiff.testing.AppClient`` on its happy path and its error paths. Each
template is scaffolded the way ``skiff new`` does it and its own
``test_app.py`` is run in a separate pytest, as the app's author would run it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml

import skiff
from skiff.testing import AppClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TEMPLATES = Path(skiff.__file__).parent / "cli" / "templates"
PLACEHOLDER = "__APP_NAME__"


def manifest(app_dir: Path) -> dict:
    return yaml.safe_load((app_dir / "skiff.yaml").read_text())


@pytest.mark.parametrize("name", ["where2eat", "guestbook-flask", "todo-fastapi", "webhook"])
def test_example_is_a_complete_app(name):
    """Each example names itself after its directory and documents itself."""
    app_dir = EXAMPLES / name
    spec = manifest(app_dir)
    assert spec["apiVersion"] == "skiff.dev/v1"
    assert spec["kind"] == "MicroApp"
    assert spec["metadata"]["name"] == name
    assert f"http://127.0.0.1:8080/{name}/" in (app_dir / "README.md").read_text()


# --- where2eat: static page + Powertools APIGatewayHttpResolver ----------------


@pytest.fixture
def where2eat() -> Iterator[AppClient]:
    with AppClient(EXAMPLES / "where2eat") as client:
        yield client


def test_where2eat_serves_its_page_at_the_root(where2eat):
    page = where2eat.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>where2eat</title>" in page.text
    # The page must work under /where2eat/ and on where2eat.localhost alike.
    assert not re.search(r'(src|href)="/', page.text)


def test_where2eat_script_calls_the_api_with_relative_urls(where2eat):
    script = where2eat.get("/main.js")
    assert script.status_code == 200
    assert '"api/places"' in script.text
    assert not re.search(r"""(api|fetch)\(\s*["'`]/""", script.text)  # no root-relative calls


def test_where2eat_works_under_its_mount():
    """The gateway serves the app at /where2eat/; the page's relative URLs resolve there."""
    with AppClient(EXAMPLES / "where2eat", mount="/where2eat") as client:
        assert "<title>where2eat</title>" in client.get("/where2eat/").text
        assert client.get("/where2eat/main.js").status_code == 200
        assert client.get("/where2eat/api/places").json()["places"]


def test_where2eat_lists_places(where2eat):
    response = where2eat.get("/api/places")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    places = response.json()["places"]
    assert places
    assert all({"name", "cuisine", "price"} <= place.keys() for place in places)


def test_where2eat_budget_filters_the_list(where2eat):
    places = where2eat.get("/api/places", query={"budget": "1"}).json()["places"]
    assert places
    assert {place["price"] for place in places} == {1}


def test_where2eat_picks_within_budget(where2eat):
    for _ in range(10):
        response = where2eat.get("/api/pick", query={"budget": "2"})
        assert response.status_code == 200
        assert response.json()["price"] <= 2


@pytest.mark.parametrize("budget", ["cheap", "0", "4", "-1"])
def test_where2eat_rejects_a_bad_budget_with_400(where2eat, budget):
    response = where2eat.get("/api/pick", query={"budget": budget})
    assert response.status_code == 400
    assert response.json() == {
        "statusCode": 400,
        "message": f"budget must be a whole number from 1 to 3, got '{budget}'",
    }


def test_where2eat_adds_a_place_once(where2eat):
    name = f"Taco Stand {uuid.uuid4().hex[:6]}"
    created = where2eat.post("/api/places", json={"name": f"  {name} ", "price": 1})
    assert created.status_code == 201
    assert created.json() == {"name": name, "cuisine": "", "price": 1}
    names = [place["name"] for place in where2eat.get("/api/places").json()["places"]]
    assert name in names

    again = where2eat.post("/api/places", json={"name": name.upper(), "price": 2})
    assert again.status_code == 409
    assert "already on the list" in again.json()["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"price": 1}, "name is required"),
        ({"name": "   ", "price": 1}, "name is required"),
        ({"name": 42, "price": 1}, "name must be a string"),
        ({"name": "X" * 81, "price": 1}, "name must be at most 80 characters"),
        ({"name": "Diner", "cuisine": ["a"], "price": 1}, "cuisine must be a string"),
        ({"name": "Diner"}, "price must be a whole number from 1 to 3"),
        ({"name": "Diner", "price": 4}, "price must be a whole number from 1 to 3"),
        ({"name": "Diner", "price": True}, "price must be a whole number from 1 to 3"),
        ([{"name": "Diner", "price": 1}], "body must be a JSON object"),
    ],
)
def test_where2eat_rejects_a_bad_place_with_400(where2eat, body, message):
    response = where2eat.post("/api/places", json=body)
    assert response.status_code == 400
    assert response.json()["statusCode"] == 400
    assert response.json()["message"].startswith(message)


def test_where2eat_rejects_malformed_json_with_400(where2eat):
    response = where2eat.post(
        "/api/places", data=b"{name: Diner", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"statusCode": 400, "message": "body must be valid JSON"}


def test_where2eat_unknown_api_route_is_404(where2eat):
    assert where2eat.get("/api/nope").status_code == 404


# --- guestbook-flask: WSGI ------------------------------------------------------


@pytest.fixture
def guestbook() -> Iterator[AppClient]:
    with AppClient(EXAMPLES / "guestbook-flask") as client:
        yield client


def test_guestbook_page_links_are_built_with_url_for(guestbook):
    page = guestbook.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    assert action.endswith("/sign")
    stylesheet = re.search(r'<link rel="stylesheet" href="([^"]+)"', page.text).group(1)
    assert stylesheet.endswith("/static/style.css")
    # The links carry the same mount prefix as each other, whatever it is.
    assert action.removesuffix("/sign") == stylesheet.removesuffix("/static/style.css")


def test_guestbook_links_and_redirects_follow_the_mount():
    """Mounted at /guestbook-flask, as the gateway does, url_for sees SCRIPT_NAME."""
    with AppClient(EXAMPLES / "guestbook-flask", mount="/guestbook-flask") as client:
        page = client.get("/guestbook-flask/").text
        assert 'action="/guestbook-flask/sign"' in page
        assert 'href="/guestbook-flask/static/style.css"' in page
        signed = client.post("/guestbook-flask/sign", data={"name": "Ada", "message": "hi"})
        assert signed.status_code == 303
        assert signed.headers["location"] == "/guestbook-flask/"


def test_guestbook_serves_its_flask_static_files(guestbook):
    response = guestbook.get("/static/style.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")


def test_guestbook_form_signs_and_redirects(guestbook):
    message = f"hello <b>{uuid.uuid4().hex[:6]}</b>"
    response = guestbook.post(
        "/sign",
        data=urlencode({"name": "Ada", "message": message}).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 303
    assert response.headers["location"].endswith("/")

    page = guestbook.get("/").text
    assert message.replace("<", "&lt;").replace(">", "&gt;") in page  # escaped, not markup
    assert message not in page


def test_guestbook_form_with_missing_field_is_400_page(guestbook):
    response = guestbook.post(
        "/sign",
        data=b"name=Ada&message=",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "message is required" in response.text


def test_guestbook_json_api_round_trip(guestbook):
    message = f"json {uuid.uuid4().hex[:6]}"
    created = guestbook.post("/api/entries", json={"name": "Grace", "message": message})
    assert created.status_code == 201
    assert created.json()["message"] == message
    assert created.headers["location"].endswith("/api/entries")

    entries = guestbook.get("/api/entries").json()["entries"]
    assert entries[0]["name"] == "Grace"
    assert entries[0]["message"] == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "Grace"}, "message is required"),
        ({"name": "", "message": "hi"}, "name is required"),
        ({"name": "G" * 41, "message": "hi"}, "name must be at most 40 characters"),
        (["Grace", "hi"], "body must be a JSON object"),
    ],
)
def test_guestbook_json_api_rejects_bad_entries(guestbook, body, message):
    response = guestbook.post("/api/entries", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_entry"
    assert error["message"].startswith(message)


# --- todo-fastapi: ASGI ---------------------------------------------------------


@pytest.fixture
def todo() -> Iterator[AppClient]:
    with AppClient(EXAMPLES / "todo-fastapi") as client:
        yield client


def test_todo_crud(todo):
    created = todo.post("/todos", json={"title": "  Water the plants "})
    assert created.status_code == 201
    item = created.json()
    assert item["title"] == "Water the plants"
    assert item["done"] is False
    assert created.headers["location"].endswith(f"/todos/{item['id']}")
    url = f"/todos/{item['id']}"

    assert todo.get(url).json() == item
    assert item in todo.get("/todos", query={"done": "false"}).json()

    updated = todo.request("PATCH", url, json={"done": True})
    assert updated.status_code == 200
    assert updated.json() == {**item, "done": True}
    assert todo.request("PATCH", url, json={"title": None}).json()["title"] == item["title"]
    assert {**item, "done": True} in todo.get("/todos", query={"done": "true"}).json()

    deleted = todo.request("DELETE", url)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert todo.get(url).status_code == 404


def test_todo_links_follow_the_mount():
    """Mounted at /todo-fastapi, as the gateway does, FastAPI sees root_path."""
    with AppClient(EXAMPLES / "todo-fastapi", mount="/todo-fastapi") as client:
        created = client.post("/todo-fastapi/todos", json={"title": "Mounted"})
        assert created.status_code == 201
        location = created.headers["location"]
        assert location.endswith(f"/todo-fastapi/todos/{created.json()['id']}")
        docs = client.get("/todo-fastapi/docs")
        assert docs.status_code == 200
        assert "/todo-fastapi/openapi.json" in docs.text


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_todo_missing_is_404(todo, method):
    response = todo.request(method, "/todos/999999", json={} if method == "PATCH" else None)
    assert response.status_code == 404
    assert response.json() == {"detail": "todo 999999 not found"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "ok", "done": "maybe"}, "done"),
        ({"title": "ok", "colour": "red"}, "colour"),
    ],
)
def test_todo_invalid_body_is_422(todo, body, field):
    response = todo.post("/todos", json=body)
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["body", field]]


def test_todo_non_integer_id_is_422(todo):
    response = todo.get("/todos/abc")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "todo_id"]


def test_todo_openapi_schema_is_served(todo):
    schema = todo.get("/openapi.json").json()
    assert schema["info"]["title"] == "todo-fastapi"
    assert "/todos/{todo_id}" in schema["paths"]


# --- webhook: plain Lambda handler with HMAC signatures -------------------------

WEBHOOK = EXAMPLES / "webhook"
DEMO_SECRET = "demo-webhook-secret"  # what ./dev up stores as secret://webhook-secret
PUSH = {
    "ref": "refs/heads/main",
    "commits": [{"id": "a1"}, {"id": "b2"}],
    "repository": {"full_name": "octo/hello"},
    "sender": {"login": "mona"},
}


@pytest.fixture
def webhook() -> Iterator[AppClient]:
    with AppClient(WEBHOOK, env={"WEBHOOK_SECRET": DEMO_SECRET}) as client:
        yield client


def sign(body: bytes, secret: str | None = None) -> str:
    """The X-Hub-Signature-256 value GitHub would send for ``body``."""
    secret = secret or DEMO_SECRET
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(client: AppClient, body: bytes, signature: str | None, event: str = "push"):
    headers = {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    }
    if signature is not None:
        headers["x-hub-signature-256"] = signature
    return client.post("/", data=body, headers=headers)


def test_webhook_accepts_a_correctly_signed_push(webhook):
    body = json.dumps(PUSH).encode()
    response = deliver(webhook, body, sign(body))
    assert response.status_code == 202
    assert response.json() == {
        "event": "push",
        "delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "action": None,
        "repository": "octo/hello",
        "sender": "mona",
        "summary": "mona pushed 2 commits to octo/hello refs/heads/main",
    }


def test_webhook_summarizes_a_ping(webhook):
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 7}).encode()
    response = deliver(webhook, body, sign(body), event="ping")
    assert response.status_code == 202
    assert response.json()["summary"] == "ping for hook 7: Keep it logically awesome."


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha256=" + "0" * 64,
        sign(b"a different body"),
        sign(json.dumps(PUSH).encode(), secret="not-the-secret"),
        "sha1=" + "0" * 40,
        "sha256=ünïcode",
    ],
    ids=["missing", "empty", "zeros", "other-body", "other-secret", "sha1", "non-ascii"],
)
def test_webhook_rejects_a_bad_signature_with_401(webhook, signature):
    response = deliver(webhook, json.dumps(PUSH).encode(), signature)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "bad_signature"


def test_webhook_rejects_a_signed_body_that_is_not_a_json_object(webhook):
    body = b"payload=%7B%7D"  # GitHub's form-encoded content type
    response = deliver(webhook, body, sign(body))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_payload"


def test_webhook_only_takes_post(webhook):
    response = webhook.get("/")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_webhook_verifies_a_base64_encoded_body(webhook):
    """The signature covers the raw bytes, so a base64 body is decoded first."""
    body = json.dumps(PUSH).encode()
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "x-github-event": "push",
            "x-hub-signature-256": sign(body),
        },
        "requestContext": {"http": {"method": "POST", "path": "/"}},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }
    result = webhook.invoke(event)
    assert result["statusCode"] == 202
    assert json.loads(result["body"])["summary"].startswith("mona pushed 2 commits")

    event["headers"]["x-hub-signature-256"] = sign(event["body"].encode())  # signed the base64
    assert webhook.invoke(event)["statusCode"] == 401


# --- templates: scaffold like `skiff new`, then run the app's own tests ---------

TEMPLATE_NAMES = ["asgi", "cron-job", "flask", "lambda-api", "queue-worker", "static-site",
                  "static-site+api", "webhook", "workflow"]


def test_the_templates_are_the_documented_nine():
    found = sorted(p.name for p in TEMPLATES.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert found == TEMPLATE_NAMES


def test_scaffolded_templates_pass_their_own_tests_in_one_session(tmp_path):
    """Every template scaffolded side by side, then one pytest over all of them: each
    test file is named for its app, so none shadows another."""
    from skiff.cli.scaffold import copy_template

    dirs = []
    for template in TEMPLATE_NAMES:
        name = "my-" + template.replace("+", "-")
        app_dir = tmp_path / name
        copy_template(TEMPLATES / template, app_dir, name)
        dirs.append(app_dir)
        assert manifest(app_dir)["metadata"]["name"] == name
        for path in app_dir.rglob("*"):
            assert PLACEHOLDER not in path.name and "__APP_MODULE__" not in path.name
            if path.is_file():
                assert PLACEHOLDER not in path.read_text(), path
        assert (app_dir / "README.md").is_file() and (app_dir / ".gitignore").is_file()
        assert (app_dir / f"test_{name.replace('-', '_')}.py").is_file()

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, dirs)],
        cwd=tmp_path, capture_output=True, text=True, timeout=200)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b(2[0-9]|[3-9][0-9]) passed", result.stdout), result.stdout
