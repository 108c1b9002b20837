"""Unmodified apps in the styles people move to Skiff, served by one real server
and called as their own READMEs and tests call them; where the app's native
runner works locally (uvicorn, gunicorn, functions-framework's own server, the
Powertools resolver given a recorded AWS event) the same app, in the same
environment Skiff built for it, gives the same answer."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from skiff.cli.client import pack
from skiff.instance.environments import Environments
from tests.conftest import SkiffServer

APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture(scope="module")
def env_python(envs_dir: Path) -> str:
    """The interpreter of the environment the compat apps share (one locked set),
    built here as the server would build it (the server then finds it ready), so
    the native runners, on the same packages, start while the server does."""
    envs = Environments(envs_dir, offline=os.environ.get("SKIFF_OFFLINE") == "1")
    return envs.resolve(APPS / "ff-http").python


@pytest.fixture(scope="module")
def launched(env_python: str):
    """Every app of NATIVE started on its own runner (not yet answering)."""
    procs: dict[str, tuple[subprocess.Popen, httpx.Client]] = {}
    try:
        for app, args in NATIVE.items():
            port = _free_port()
            proc = subprocess.Popen([env_python, "-m", *(a.replace("{port}", str(port))
                                                          for a in args)],
                                    cwd=APPS / app, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL,
                                    env={"PATH": os.environ.get("PATH", "")})
            procs[app] = (proc, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30))
        yield procs
    finally:
        for proc, client in procs.values():
            client.close()
            proc.kill()  # they hold nothing worth a graceful stop
            proc.wait()


# app → (module, recorded event) the Lambda handler is given on the app's environment
RECORDED = {"powertools-rest": ("app", "events/get_todo.json"),
            "powertools-http": ("app", "events/hello.json")}


@pytest.fixture(scope="module")
def recorded(env_python: str):
    """Each RECORDED handler's result for its recorded AWS event, computed while the
    server starts."""
    procs = {app: subprocess.Popen(
        [env_python, "-c", f"import json, sys; sys.path.insert(0, '.'); "
                           f"from {module} import lambda_handler; "
                           f"print(json.dumps(lambda_handler(json.load(open({event!r})), None)))"],
        cwd=APPS / app, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PATH": os.environ.get("PATH", "")}) for app, (module, event) in RECORDED.items()}
    results: dict[str, dict] = {}

    def result(app: str) -> dict:
        if app not in results:
            out, err = procs[app].communicate(timeout=120)
            assert procs[app].returncode == 0, err
            results[app] = json.loads(out)
        return results[app]

    yield result
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path, launched, recorded):
    s = SkiffServer(tmp_path_factory.mktemp("compat-home"), [APPS], envs_dir)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def native(server: SkiffServer, launched) -> dict[str, httpx.Client]:
    """The native runners, once each answers."""
    for app, (proc, client) in launched.items():
        _wait_ready(app, proc, client)
    return {app: client for app, (_proc, client) in launched.items()}


def run_native(python: str, app: str, code: str) -> str:
    """Run ``code`` in the app's directory on the app's own environment."""
    proc = subprocess.run([python, "-c", code], cwd=APPS / app, capture_output=True, text=True,
                          timeout=120, env={"PATH": os.environ.get("PATH", "")})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# app → how its native runner serves it (python -m ...); {port} is filled in
NATIVE = {
    "mangum-fastapi": ("uvicorn", "app:app", "--port", "{port}"),
    "fastapi-plain": ("uvicorn", "main:app", "--port", "{port}"),
    "sse-stream": ("uvicorn", "app:app", "--port", "{port}"),
    "flask-factory": ("gunicorn", "flaskr:create_app()", "--bind", "127.0.0.1:{port}",
                      "--workers", "1"),
    "ff-http": ("functions_framework", "--target", "hello_http", "--host", "127.0.0.1",
                "--port", "{port}"),
    "ff-event": ("functions_framework", "--target", "on_order", "--host", "127.0.0.1",
                 "--port", "{port}"),
}


def _wait_ready(app: str, proc: subprocess.Popen, client: httpx.Client) -> None:
    for _ in range(1200):  # a readiness wait: the runner's first answer
        try:
            client.get("/")
            return
        except httpx.TransportError:
            if proc.poll() is not None:
                raise AssertionError(f"{app}'s native runner exited with "
                                     f"{proc.returncode}") from None
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.05)
    raise AssertionError(f"{app}'s native runner did not answer")


def _handler_result(python: str, app: str, module: str, event: str) -> dict:
    out = run_native(python, app, (
        f"import json, sys; sys.path.insert(0, '.'); from {module} import lambda_handler; "
        f"print(json.dumps(lambda_handler(json.load(open({event!r})), None)))"))
    return json.loads(out)


# -- Lambda styles ------------------------------------------------------------

def test_sam_hello_world_rest_api(server):
    """`sam init`'s hello world (REST API, payload 1.0) answers as its own unit test
    expects, and as the handler answers the recorded event; it needs no packages,
    so it runs on the platform's interpreter, isolated."""
    r = server.http.get("/sam-hello/hello")
    assert r.status_code == 200
    body = r.json()
    native = _handler_result(sys.executable, "sam-hello", "hello_world.app", "events/event.json")
    assert body == json.loads(native["body"])
    assert body == {"message": "hello world", "method": "GET", "path": "/hello",
                    "resource": "/hello"}
    assert server.http.post("/sam-hello/hello").status_code == 405


def test_powertools_rest_resolver(server, recorded):
    """APIGatewayRestResolver: the server's answer is the resolver's answer to the
    recorded REST event for the same request."""
    r = server.http.get("/powertools-rest/todos/7", params={"verbose": "yes"})
    native = recorded("powertools-rest")
    assert r.status_code == native["statusCode"] == 200
    assert r.json() == json.loads(native["body"]) == {"id": "7", "title": "todo 7",
                                                      "verbose": "yes"}
    assert r.headers["content-type"] == native["multiValueHeaders"]["Content-Type"][0]
    created = server.http.post("/powertools-rest/todos", json={"title": "milk"})
    assert (created.status_code, created.json()) == (201, {"created": "milk"})


def test_powertools_http_resolver(server, recorded):
    """APIGatewayHttpResolver (payload 2.0), against the recorded HTTP API event."""
    r = server.http.get("/powertools-http/hello/ada", params={"lang": "fr"})
    native = recorded("powertools-http")
    assert r.status_code == native["statusCode"] == 200
    assert r.json() == json.loads(native["body"]) == {"message": "hello ada", "lang": "fr"}
    assert server.http.get("/powertools-http/nope").status_code == 404


def test_mangum_fastapi_against_uvicorn(server, native):
    """A FastAPI app behind Mangum on Skiff answers as the same app on uvicorn."""
    for path, params in (("/items/5", {"q": "x"}), ("/items/nope", {}), ("/missing", {})):
        ours = server.http.get(f"/mangum-fastapi{path}", params=params)
        theirs = native["mangum-fastapi"].get(path, params=params)
        assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json()), path


# -- ASGI / WSGI --------------------------------------------------------------

def test_fastapi_plain_against_uvicorn(server, native):
    """FastAPI's first-steps app: the same answers (validation errors too) as uvicorn."""
    item = {"name": "hammer", "price": 9.5}
    calls = [("GET", "/", None), ("PUT", "/items/3", item), ("PUT", "/items/3", {"name": 1})]
    for method, path, body in calls:
        ours = server.http.request(method, f"/fastapi-plain{path}", json=body)
        theirs = native["fastapi-plain"].request(method, path, json=body)
        assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json()), path
    assert server.http.get("/fastapi-plain/openapi.json").json()["paths"]["/items/{item_id}"]


def test_flask_app_factory_against_gunicorn(server, native):
    """The Flask tutorial's `create_app()` factory with a blueprint; `url_for`
    builds URLs under the mount as gunicorn's do under its root."""
    theirs_app = native["flask-factory"]
    for path in ("/hello", "/", "/3"):
        ours, theirs = server.http.get(f"/flask-factory{path}"), theirs_app.get(path)
        assert (ours.status_code, ours.text) == (theirs.status_code, theirs.text), path
    assert theirs_app.get("/where").json() == {"index": "/", "post": "/3"}
    assert server.http.get("/flask-factory/where").json() == {
        "index": "/flask-factory/", "post": "/flask-factory/3"}


def _sse_events(response: httpx.Response) -> list[tuple[str, str]]:
    events, kind = [], "message"
    for line in response.iter_lines():
        if line.startswith("event:"):
            kind = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            events.append((kind, line.partition(":")[2].strip()))
            kind = "message"
    return events


def test_sse_starlette_stream_against_uvicorn(server, native):
    """An sse-starlette EventSourceResponse streams its events in order, as on uvicorn."""
    with server.http.stream("GET", "/sse-stream/numbers", params={"count": 3}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        ours = _sse_events(r)
    with native["sse-stream"].stream("GET", "/numbers", params={"count": 3}) as r:
        theirs = _sse_events(r)
    assert ours == theirs == [("tick", "n=1"), ("tick", "n=2"), ("tick", "n=3"), ("done", "bye")]


# -- functions-framework ------------------------------------------------------

def test_functions_framework_http_against_its_server(server, native):
    """`@functions_framework.http` gets a Flask request and may return anything Flask
    accepts (a tuple with headers, jsonify, a streamed Response), as under
    functions-framework's own server."""
    for method, path, kw in (("GET", "/", {"params": {"name": "Ada"}}),
                             ("POST", "/orders", {"json": {"n": 1}}),
                             ("GET", "/stream", {})):
        ours = server.http.request(method, f"/ff-http{path}", **kw)
        theirs = native["ff-http"].request(method, path, **kw)
        assert (ours.status_code, ours.text) == (theirs.status_code, theirs.text), path
        assert ours.headers["content-type"] == theirs.headers["content-type"]
        if path == "/stream":  # streamed as it is generated, by both
            assert "content-length" not in ours.headers
            assert "content-length" not in theirs.headers
    assert server.http.get("/ff-http/").headers["x-function"] == "hello_http"
    assert server.app("ff-http")["kind"] == "wsgi"


def _logged(server: SkiffServer, app: str, text: str) -> bool:
    rows = server.admin.get(f"/apps/{app}/logs").json()
    return any(text in r.get("line", r.get("message", "")) for r in rows)


def test_functions_framework_cloud_event_from_the_bus_and_http(server, native):
    """`@functions_framework.cloud_event` gets a CloudEvent published on Skiff's bus
    (through its event trigger) and one POSTed in binary mode, as the framework's
    own server takes it."""
    r = server.admin.post("/events", content=json.dumps(
        {"specversion": "1.0", "id": "bus-1", "type": "compat.order.placed",
         "source": "shop", "data": {"amount": 3}}),
        headers={"content-type": "application/cloudevents+json"})
    assert r.json()["events"][0]["matched"] == ["ff-event"]
    server.wait_for(lambda: _logged(server, "ff-event",
                                    "order bus-1 of type compat.order.placed: {'amount': 3}"),
                    "the bus event to reach the function")
    headers = {"ce-specversion": "1.0", "ce-id": "http-1", "ce-type": "compat.order.placed",
               "ce-source": "shop", "content-type": "application/json"}
    ours = server.http.post("/ff-event/", content=b'{"amount": 4}', headers=headers)
    assert (ours.status_code, ours.text) == (200, "OK")
    server.wait_for(lambda: _logged(server, "ff-event", "order http-1"), "the HTTP event")
    theirs = native["ff-event"].post("/", content=b'{"amount": 4}', headers=headers)
    assert (theirs.status_code, theirs.text) == (200, "OK")


# -- dependency isolation -----------------------------------------------------

def test_platform_packages_are_not_the_apps(server):
    """An app importing a package it does not declare (PyYAML: the platform has it)
    is refused at deploy, 422, with the requirements.txt line to add, as it would
    fail on Lambda."""
    r = server.admin.post("/apps", content=pack(Path(__file__).parent / "leaky"),
                          headers={"content-type": "application/gzip"})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "init_failed"
    assert "no module named 'yaml' is installed: add PyYAML to requirements.txt" in \
        error["message"]
    assert server.admin.get("/apps/leaky").status_code == 404


PLATFORM_ONLY = ["requests", "httpx", "yaml", "typer", "rich", "cryptography", "croniter",
                 "detect_secrets", "setuptools", "_distutils_hack", "pip"]


def _stdlib_or(entry: str, allowed: list[str]) -> bool:
    base = os.path.realpath(sys.base_prefix)
    inside_base = os.path.realpath(entry).startswith(base + os.sep)
    return entry in allowed or (inside_base and "site-packages" not in entry)


def test_an_app_without_requirements_imports_the_stdlib_and_the_runtime_only(server):
    """sys.path of an app with no requirements.txt: its code, the standard library and
    Skiff's runtime; none of the platform's packages resolve."""
    got = server.http.get("/probe-bare/").json()
    code = got["path"][0]  # the revision's read-only copy of the code
    assert code.startswith(str(server.home / "revisions" / "probe-bare"))
    runtime = [e for e in got["path"] if not _stdlib_or(e, [code])]
    for entry in runtime:  # the runtime's own directory: skiff and nothing importable beside
        assert {n for n in os.listdir(entry) if not n.endswith(".egg-info")} <= {
            "skiff", "__pycache__"}, entry
    assert got["importable"] == {n: n in ("msgspec", "skiff") for n in got["importable"]}


def test_an_app_imports_its_requirements_but_not_the_platforms_packages(server, envs_dir):
    """With a requirements.txt: what it names (and their dependencies) resolve, the
    platform's other packages do not, and sys.path holds the app's environment."""
    got = server.http.get("/probe-env/").json()
    importable = got["importable"]
    assert all(importable[n] for n in ("flask", "fastapi", "pydantic", "starlette",
                                       "aws_lambda_powertools", "uvicorn", "msgspec", "skiff"))
    assert not any(importable[n] for n in PLATFORM_ONLY)
    env = [e for e in got["path"] if e.startswith(str(envs_dir))]
    assert env and all(e.endswith(("site-packages", "skiff-runtime")) for e in env), env
    assert got["path"][0].startswith(str(server.home / "revisions" / "probe-env"))
    assert all(_stdlib_or(e, [got["path"][0], *env]) for e in got["path"])
