"""The example apps served by a real Skiff, each with its own dependency environment."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLES, SkiffServer


@pytest.fixture(scope="module")
def examples(tmp_path_factory, envs_dir):
    home = tmp_path_factory.mktemp("home")
    # as ./dev up does: the webhook example reads its signing key from the secret store
    subprocess.run([sys.executable, "-m", "skiff", "secrets", "set", "webhook-secret",
                    "demo-webhook-secret", "--home", str(home)], check=True, capture_output=True)
    server = SkiffServer(home, [EXAMPLES], envs_dir)
    yield server
    server.stop()


def test_all_examples_are_deployed(examples):
    """`skiff up examples` serves every example app."""
    names = {a["name"]: a for a in examples.admin.get("/apps").json()}
    assert set(names) >= {"where2eat", "guestbook-flask", "todo-fastapi", "webhook"}
    assert names["guestbook-flask"]["kind"] == "wsgi"
    assert names["todo-fastapi"]["kind"] == "asgi"
    assert names["where2eat"]["kind"] == "lambda"
    # apps with requirements.txt get their own environment; webhook has none
    assert names["webhook"]["environment"] == "default"
    assert names["todo-fastapi"]["environment"] != "default"


def test_where2eat_static_page_and_powertools_api(examples):
    """The static page is served with ETag revalidation; the Powertools API answers under the mount."""
    page = examples.http.get("/where2eat/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    again = examples.http.get("/where2eat/", headers={"if-none-match": page.headers["etag"]})
    assert again.status_code == 304
    js = examples.http.get("/where2eat/main.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert examples.http.get("/where2eat").status_code == 308
    places = examples.http.get("/where2eat/api/places").json()["places"]
    assert places
    created = examples.http.post("/where2eat/api/places",
                                 json={"name": "Taco Stand", "cuisine": "mexican", "price": 1})
    assert created.status_code == 201
    bad = examples.http.post("/where2eat/api/places", json={"name": ""})
    assert bad.status_code == 400
    host = examples.http.get("/api/pick", params={"budget": 3},
                             headers={"host": "where2eat.localhost"})
    assert host.status_code == 200


def test_flask_guestbook_under_its_prefix(examples):
    """Flask's url_for builds links under the app's mount (SCRIPT_NAME)."""
    page = examples.http.get("/guestbook-flask/")
    assert page.status_code == 200
    assert "/guestbook-flask/static/style.css" in page.text
    r = examples.http.post("/guestbook-flask/api/entries", json={"name": "Ada", "message": "hi"})
    assert r.status_code == 201
    assert any(e["name"] == "Ada" for e in examples.http.get("/guestbook-flask/api/entries").json()["entries"])


def test_fastapi_todos_crud(examples):
    """FastAPI routes, 404 and 422 work under the mount (root_path)."""
    r = examples.http.post("/todo-fastapi/todos", json={"title": "write tests"})
    assert r.status_code == 201
    assert r.headers["location"].startswith("http") and "/todo-fastapi/todos/" in r.headers["location"]
    todo_id = r.json()["id"]
    assert examples.http.get(f"/todo-fastapi/todos/{todo_id}").json()["title"] == "write tests"
    assert examples.http.get("/todo-fastapi/todos/99999").status_code == 404
    assert examples.http.post("/todo-fastapi/todos", json={"nope": 1}).status_code == 422
    assert examples.http.get("/todo-fastapi/docs").status_code == 200


def test_webhook_verifies_signatures(examples):
    """The webhook accepts a correctly signed delivery and refuses a forged one."""
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    sig = "sha256=" + hmac.new(b"demo-webhook-secret", body, hashlib.sha256).hexdigest()
    ok = examples.http.post("/webhook/", content=body, headers={
        "x-hub-signature-256": sig, "x-github-event": "ping", "content-type": "application/json"})
    assert ok.status_code == 202
    forged = examples.http.post("/webhook/", content=body, headers={
        "x-hub-signature-256": "sha256=" + "0" * 64, "x-github-event": "ping"})
    assert forged.status_code == 401


def test_new_app_from_each_template_serves_and_passes_its_test(examples, tmp_path):
    """`skiff new` scaffolds apps whose own tests pass (all in one pytest session: each
    test file is named for its app) and which deploy and answer."""
    env = {**os.environ, "SKIFF_HOME": str(examples.home)}
    names = []
    for template in ("lambda-api", "asgi", "flask", "static-site", "static-site+api",
                     "workflow"):
        name = "my-" + template.replace("+", "-")
        subprocess.run([sys.executable, "-m", "skiff", "new", name, "--template", template,
                        "--dir", str(tmp_path), "--no-git"], check=True, capture_output=True,
                       env=env)
        names.append(name)
    test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *names], capture_output=True, text=True, cwd=tmp_path)
    assert test.returncode == 0, test.stdout + test.stderr
    for name in names:
        deploy = subprocess.run([sys.executable, "-m", "skiff", "deploy", str(tmp_path / name)],
                                capture_output=True, text=True, env=env)
        assert deploy.returncode == 0, deploy.stderr
        assert examples.http.get(f"/{name}/").status_code == 200, name
    # the workflow template's state machine runs its two Task states, or its Catch
    flow = tmp_path / "my-workflow" / "workflow"
    deploy = subprocess.run([sys.executable, "-m", "skiff", "deploy", str(flow)],
                            capture_output=True, text=True, env=env)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert "skiff sfn start my-workflow-flow" in " ".join(deploy.stdout.split())
    for order, expected in (({"id": 1, "qty": 2}, {"shipped": 2, "id": 1}),
                            ({"id": 2, "qty": 0}, {"rejected": True})):
        run = subprocess.run([sys.executable, "-m", "skiff", "sfn", "start",
                              "my-workflow-flow", json.dumps(order), "--sync"],
                             capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stdout + run.stderr
        outcome = json.loads(run.stdout)
        assert outcome["status"] == "SUCCEEDED", outcome
        output = json.loads(outcome["output"])
        got = output.get("fulfilment", output)
        assert {k: got.get(k) for k in expected} == expected, output
