"""The ASGI adapter: scope, receive/send, root_path routing, lifespan."""

import asyncio

import pytest

from skiff.runtime import LoadError
from skiff.runtime.asgi import AsgiApp, build_scope

from .conftest import make_context, make_request


def run(coro):
    return asyncio.run(coro)


def test_scope_shape():
    req = make_request(method="POST", path="/items/é", query="a=1&b=2", mount="/shop",
                       headers=[("content-type", "text/plain"), ("host", "shop.test:8443")],
                       host="shop.test:8443", scheme="https", client="10.0.0.2")
    scope = build_scope(req, {"pool": 1})
    assert scope == {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/shop/items/é",
        "raw_path": b"/shop/items/%C3%A9",
        "root_path": "/shop",
        "query_string": b"a=1&b=2",
        "headers": [(b"content-type", b"text/plain"), (b"host", b"shop.test:8443")],
        "client": ("10.0.0.2", 0),
        "server": ("shop.test", 8443),
        "state": {"pool": 1},
    }


@pytest.mark.parametrize(("host", "scheme", "server"), [
    ("", "http", None),
    ("example.test", "http", ("example.test", 80)),
    ("example.test", "https", ("example.test", 443)),
    ("[::1]:8000", "http", ("[::1]", 8000)),
])
def test_server_from_host(host, scheme, server):
    assert build_scope(make_request(host=host, scheme=scheme))["server"] == server


def echo_app(log):
    async def app(scope, receive, send):
        first = await receive()
        log.append(first)
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"Content-Type", b"text/plain"), (b"x-path", scope["path"].encode())]})
        await send({"type": "http.response.body", "body": b"got:", "more_body": True})
        await send({"type": "http.response.body", "body": first["body"]})
        log.append(await receive())  # after the response: a disconnect, not a hang
    return app


def test_body_is_received_once_then_disconnect():
    log = []
    resp = run(AsgiApp(echo_app(log)).ahandle_http(
        make_request(id="x", method="POST", path="/p", mount="/m", body=b"hello"), make_context()))
    assert (resp.id, resp.status, resp.body) == ("x", 201, b"got:hello")
    assert resp.headers == [("content-type", "text/plain"), ("x-path", "/m/p")]
    assert log == [{"type": "http.request", "body": b"hello", "more_body": False},
                   {"type": "http.disconnect"}]


def test_receive_waits_for_the_response_to_complete():
    """A task listening for disconnect while the app streams sees it only at the end."""
    order = []

    async def app(scope, receive, send):
        await receive()

        async def listen():
            message = await receive()
            order.append(message["type"])

        listener = asyncio.create_task(listen())
        await send({"type": "http.response.start", "status": 200})
        await asyncio.sleep(0)
        order.append("body")
        await send({"type": "http.response.body", "body": b"done"})
        await listener

    resp = run(AsgiApp(app).ahandle_http(make_request(), make_context()))
    assert resp.body == b"done"
    assert order == ["body", "http.disconnect"]


def test_error_before_the_response_propagates():
    async def app(scope, receive, send):
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        run(AsgiApp(app).ahandle_http(make_request(), make_context()))


def test_error_after_a_complete_response_keeps_the_response(capsys):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"Internal Server Error"})
        raise ValueError("logged, not lost")

    resp = run(AsgiApp(app).ahandle_http(make_request(), make_context()))
    assert (resp.status, resp.body) == (500, b"Internal Server Error")
    assert "logged, not lost" in capsys.readouterr().err


@pytest.mark.parametrize(("messages", "error"), [
    ([], "without starting a response"),
    ([{"type": "http.response.start", "status": 200}], "without completing a response"),
    ([{"type": "http.response.body", "body": b"x"}], "before http.response.start"),
])
def test_incomplete_responses_are_errors(messages, error):
    async def app(scope, receive, send):
        for message in messages:
            await send(message)

    with pytest.raises(RuntimeError, match=error):
        run(AsgiApp(app).ahandle_http(make_request(), make_context()))


def test_fastapi_routes_under_a_mount(isolated_imports):
    from skiff.runtime import load_app

    from .conftest import APPS

    app = load_app(str(APPS / "fastapi_shop"), "app:app", None)

    async def go():
        items = await app.ahandle_http(make_request(path="/items", mount="/shop"), make_context())
        one = await app.ahandle_http(make_request(path="/items/5", mount="/shop",
                                                  headers=[("host", "example.test")]), make_context())
        return items, one

    items, one = run(go())
    assert (items.status, items.body) == (200, b'[{"id":1,"name":"kettle"}]')
    assert one.status == 200
    assert b'"self":"http://example.test/shop/items/5"' in one.body


class Lifespan:
    """A lifespan-aware app recording what it was asked to do."""

    def __init__(self, fail=None):
        self.events = []
        self.fail = fail

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    if self.fail:
                        await send({"type": "lifespan.startup.failed", "message": self.fail})
                        return
                    scope["state"]["db"] = "open"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await receive()
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": scope["state"]["db"].encode()})


def test_lifespan_startup_state_and_shutdown():
    target = Lifespan()
    app = AsgiApp(target)

    async def go():
        await app.startup()
        resp = await app.ahandle_http(make_request(), make_context())
        await app.shutdown()
        return resp

    assert run(go()).body == b"open"
    assert target.events == ["lifespan.startup", "lifespan.shutdown"]
    assert app.lifespan_supported is True


def test_lifespan_startup_failure_is_a_load_error():
    app = AsgiApp(Lifespan(fail="Traceback ...\nConnectionError: db down\n"))
    with pytest.raises(LoadError, match="ASGI lifespan startup failed: ConnectionError: db down"):
        run(app.startup())


def test_apps_without_lifespan_still_serve():
    """Per the ASGI spec, an app raising on the lifespan scope just has no lifespan."""
    async def app(scope, receive, send):
        assert scope["type"] == "http", "no lifespan here"
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    loaded = AsgiApp(app)

    async def go():
        await loaded.startup()
        resp = await loaded.ahandle_http(make_request(), make_context())
        await loaded.shutdown()
        return resp

    assert run(go()).status == 204
    assert loaded.lifespan_supported is False


def test_events_are_not_supported():
    from skiff.runtime import NotSupported

    with pytest.raises(NotSupported):
        AsgiApp(echo_app([])).handle_event({}, make_context())
    with pytest.raises(NotSupported, match="ahandle_http"):
        AsgiApp(echo_app([])).handle_http(make_request(), make_context())
