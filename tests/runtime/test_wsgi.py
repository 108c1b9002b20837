"""The WSGI adapter: PEP 3333 environ, start_response, closing the iterable."""

import io
import sys

import pytest

from skiff.runtime.wsgi import WsgiApp, build_environ

from .conftest import make_context, make_request


def test_environ_shape():
    req = make_request(method="POST", path="/greet/é", query="q=1", mount="/site",
                       headers=[("content-type", "text/plain"), ("content-length", "5"),
                                ("x-tag", "a"), ("x-tag", "b"), ("cookie", "a=1"), ("cookie", "b=2")],
                       body=b"hello", host="site.test:8080", client="10.0.0.3")
    env = build_environ(req)
    assert isinstance(env.pop("wsgi.input"), io.BytesIO)
    assert env.pop("wsgi.errors") is sys.stderr
    assert env == {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "/site",
        "PATH_INFO": "/greet/\xc3\xa9",  # UTF-8 bytes as latin-1 (PEP 3333)
        "QUERY_STRING": "q=1",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "5",
        "SERVER_NAME": "site.test",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.3",
        "HTTP_X_TAG": "a,b",
        "HTTP_COOKIE": "a=1; b=2",
        "HTTP_HOST": "site.test:8080",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input_terminated": True,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def test_body_without_a_length_header_gets_one():
    env = build_environ(make_request(method="POST", body=b"abc"))
    assert env["CONTENT_LENGTH"] == "3"
    assert env["wsgi.input"].read() == b"abc"


class Body:
    """An iterable response that records whether the server closed it."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.closed = False

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        self.closed = True


def test_response_is_collected_and_iterable_closed():
    body = Body([b"a", b"", b"b"])

    def app(environ, start_response):
        write = start_response("201 Created", [("Content-Type", "text/plain"), ("X-A", "1")])
        write(b"w")
        return body

    resp = WsgiApp(app).handle_http(make_request(id="q"), make_context())
    assert (resp.id, resp.status, resp.body) == ("q", 201, b"wab")
    assert resp.headers == [("content-type", "text/plain"), ("x-a", "1")]
    assert body.closed


def test_iterable_is_closed_when_iteration_fails():
    class Failing(Body):
        def __iter__(self):
            raise ValueError("mid-body")

    body = Failing([])

    def app(environ, start_response):
        start_response("200 OK", [])
        return body

    with pytest.raises(ValueError, match="mid-body"):
        WsgiApp(app).handle_http(make_request(), make_context())
    assert body.closed


def test_generator_apps_may_start_the_response_late():
    def app(environ, start_response):
        yield b""
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"late"

    assert WsgiApp(app).handle_http(make_request(), make_context()).body == b"late"


def test_start_response_with_exc_info_replaces_the_status():
    def app(environ, start_response):
        start_response("200 OK", [])
        try:
            raise ValueError
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"oops"]

    assert WsgiApp(app).handle_http(make_request(), make_context()).status == 500


def test_app_that_never_starts_a_response():
    with pytest.raises(RuntimeError, match="without calling start_response"):
        WsgiApp(lambda environ, start_response: []).handle_http(make_request(), make_context())


def test_flask_url_for_uses_the_mount(isolated_imports):
    from skiff.runtime import load_app

    from .conftest import APPS

    app = load_app(str(APPS / "flask_site"), "app:app", None)
    resp = app.handle_http(make_request(path="/", mount="/site"), make_context())
    assert resp.body == b'<a href="/site/greet/ada">greet</a>'
    resp = app.handle_http(make_request(path="/go", mount="/site"), make_context())
    assert resp.status == 302
    assert ("location", "/site/") in resp.headers
