"""skiff.testing.AppClient end to end, one fixture app per kind."""

import os
import sys

import pytest

from skiff.runtime import BadResult, LoadError, NotSupported
from skiff.testing import AppClient

from .conftest import APPS


def test_plain_lambda_handler():
    with AppClient(APPS / "hello_lambda") as client:
        assert client.kind == "lambda"
        r = client.get("/hi", query={"name": "Ada"}, cookies={"s": "1"})
        assert r.status_code == 200
        assert r.headers["x-path"] == "/hi"
        assert r.headers["set-cookie"] == "seen=1; Path=/"
        assert r.json() == {"message": "Ahoy, Ada", "method": "GET", "cookies": ["s=1"],
                            "body": None, "memory": 128, "cwd_has_app": True}


def test_spec_env_is_set_only_during_calls(monkeypatch):
    monkeypatch.delenv("GREETING", raising=False)
    with AppClient(APPS / "hello_lambda", env={"GREETING": "Hej"}) as client:
        assert "GREETING" not in os.environ
        assert client.get("/").json()["message"] == "Hej, world"
    assert "GREETING" not in os.environ


def test_direct_invocation():
    with AppClient(APPS / "hello_lambda") as client:
        assert client.invoke({"x": [1, 2]}) == {"echo": {"x": [1, 2]}, "function": "hello"}


def test_post_bodies():
    with AppClient(APPS / "hello_lambda") as client:
        assert client.post("/", json={"a": 1}).json()["body"] == '{"a": 1}'
        assert client.post("/", data="raw text").json()["body"] == "raw text"
        assert client.post("/", data={"k": "v"}).json()["body"] == "k=v"


def test_bad_result_fails_like_on_the_platform():
    with AppClient(APPS / "bad_result") as client:
        with pytest.raises(BadResult, match="type 'set' that is not JSON serializable"):
            client.get("/")
        with pytest.raises(BadResult, match="type 'set'"):
            client.invoke({})


def test_broken_import_is_a_load_error(monkeypatch):
    monkeypatch.delenv("BROKEN_APP_DATABASE_URL", raising=False)
    with pytest.raises(LoadError, match="KeyError: 'BROKEN_APP_DATABASE_URL'"):
        AppClient(APPS / "broken_import")
    assert str(APPS / "broken_import") not in sys.path


class TestPowertoolsResolver:
    """An unmodified APIGatewayHttpResolver app, served under a mount."""

    @pytest.fixture
    def client(self):
        with AppClient(APPS / "powertools_api", mount="/pantry") as client:
            yield client

    def test_path_parameter(self, client):
        r = client.get("/pantry/items/1")
        assert (r.status_code, r.json()) == (200, {"id": "1", "name": "flour"})
        assert client.get("/pantry/items/404").status_code == 404

    def test_post_json_body_and_cookies(self, client):
        r = client.post("/pantry/items", json={"id": "2", "name": "salt"})
        assert r.status_code == 201
        assert r.json() == {"id": "2", "name": "salt"}
        assert r.headers["set-cookie"].startswith("last=2")
        assert client.get("/pantry/items/2").json()["name"] == "salt"

    def test_query_parameters_and_request_cookies(self, client):
        r = client.get("/pantry/search?q=oat&tag=a&tag=b", cookies={"sid": "z"})
        assert r.json() == {"q": "oat", "tags": "a,b", "session": ["sid=z"]}

    def test_lambda_context(self, client):
        body = client.get("/pantry/whoami").json()
        assert body["function"] == "pantry"
        assert body["arn"] == "arn:aws:lambda:us-east-1:000000000000:function:pantry"
        assert body["request_id"]

    def test_paths_outside_the_mount(self, client):
        assert client.get("/elsewhere/items/1").status_code == 404


class TestFastAPI:
    @pytest.fixture
    def client(self):
        with AppClient(APPS / "fastapi_shop", mount="/shop") as client:
            yield client

    def test_routes_and_url_building_under_the_mount(self, client):
        assert client.kind == "asgi"
        assert client.get("/shop/items").json() == [{"id": 1, "name": "kettle"}]
        assert client.get("/shop/items/3").json() == {
            "id": 3, "self": "http://testserver/shop/items/3", "root_path": "/shop"}
        assert client.get("/shop/missing").status_code == 404

    def test_json_post_and_streaming(self, client):
        assert client.post("/shop/items", json={"a": 1}).json() == {"got": {"a": 1}}
        r = client.get("/shop/stream")
        assert (r.text, r.headers["content-type"]) == ("abc", "text/plain; charset=utf-8")

    def test_unhandled_error_is_the_app_500(self, client, capsys):
        r = client.get("/shop/boom")
        assert (r.status_code, r.text) == (500, "Internal Server Error")
        assert "kaboom" in capsys.readouterr().err


def test_starlette_lifespan_runs_once_around_requests():
    client = AppClient(APPS / "starlette_life")
    module = sys.modules["app"]
    assert client.get("/").json() == {"pool": "db-pool-1", "events": ["startup"]}
    assert client.get("/").json()["events"] == ["startup"]
    client.close()
    assert module.EVENTS == ["startup", "shutdown"]
    with pytest.raises(RuntimeError, match="closed"):
        client.get("/")


def test_flask_under_a_mount():
    with AppClient(APPS / "flask_site", mount="/site") as client:
        assert client.kind == "wsgi"
        assert client.get("/site").text == '<a href="/site/greet/ada">greet</a>'
        r = client.get("/site/greet/bob", query=[("q", "1"), ("q", "2")])
        assert r.json() == {"hello": "bob", "q": ["1", "2"],
                            "external": "http://testserver/site/greet/bob"}
        r = client.post("/site/form", data={"x": "y"})
        assert r.json() == {"x": "y"}
        assert [v for k, v in r.header_list if k == "set-cookie"] == ["a=1; Path=/", "b=2; Path=/"]
        with pytest.raises(NotSupported):
            client.invoke({})


def test_static_files_then_the_handler():
    with AppClient(APPS / "static_site") as client:
        index = client.get("/")
        assert index.status_code == 200
        assert index.headers["content-type"] == "text/html; charset=utf-8"
        assert b"home" in index.content
        assert client.get("/index.html").content == index.content
        assert client.get("/css/site.css").headers["content-type"] == "text/css; charset=utf-8"
        assert client.get("/api/places").json() == {"api": "/api/places"}
        assert client.get("/../skiff.yaml").json() == {"api": "/../skiff.yaml"}  # never a file
        assert client.post("/index.html").json() == {"api": "/index.html"}


def test_apps_with_the_same_module_name_do_not_collide():
    """Every fixture app is app.py; each client gets its own."""
    with AppClient(APPS / "hello_lambda") as first:
        assert first.get("/").status_code == 200
    with AppClient(APPS / "static_site") as second:
        assert second.get("/x").json() == {"api": "/x"}
    assert "app" not in sys.modules


@pytest.mark.parametrize("app", ["hello_lambda", "static_site", "fastapi_shop"])
def test_yaml_fallback_reads_the_same_fields(monkeypatch, app):
    """Without skiff.manifest, the client reads the few fields it needs itself."""
    from skiff import testing

    full = testing._read_spec(APPS / app)
    monkeypatch.setitem(sys.modules, "skiff.manifest", None)  # import now fails
    assert testing._read_spec(APPS / app) == full


def test_an_app_factory_is_called_once_at_init():
    """handler "flaskr:create_app()": the factory makes the app once; its kind is detected."""
    with AppClient(APPS / "flask_factory") as client:
        assert client.kind == "wsgi"
        assert client.get("/hello").json() == {"hello": "world", "apps_made": 1}
        assert client.get("/hello").json()["apps_made"] == 1
