"""Adapters answering through a responder: a body sent in parts streams (each
part handed on before the app produces the next), a whole one is handed on as
soon as it is complete (before background tasks run), and a cancel closes a
WSGI iterable."""

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from skiff.runtime.asgi import AsgiApp
from skiff.runtime.streaming import StreamCancelled
from skiff.runtime.wsgi import WsgiApp

from .conftest import make_context, make_request


class Recorder:
    """A responder that writes down what it was given, in order."""

    def __init__(self, log: list, cancel_after: int | None = None) -> None:
        self.log = log
        self.cancel_after = cancel_after

    def complete(self, resp):
        self.log.append(("complete", resp.status, resp.body))

    def _start(self, status, headers):
        self.log.append(("start", status, dict(headers).get("content-type")))

    def _chunk(self, data):
        self.log.append(("chunk", data))
        if self.cancel_after is not None and sum(e[0] == "chunk" for e in self.log) >= self.cancel_after:
            raise StreamCancelled("r")

    def _end(self):
        self.log.append(("end",))


class AsyncRecorder(Recorder):
    async def start(self, status, headers):
        self._start(status, headers)

    async def chunk(self, data):
        self._chunk(data)

    async def end(self):
        self._end()


class SyncRecorder(Recorder):
    start, chunk, end = Recorder._start, Recorder._chunk, Recorder._end


def test_starlette_streaming_response_streams_each_part_as_it_is_made():
    log: list = []

    async def events():
        for n in range(3):
            log.append(("made", n))
            yield f"data: {n}\n\n"

    async def endpoint(request):
        return StreamingResponse(events(), media_type="text/event-stream")

    app = AsgiApp(Starlette(routes=[Route("/", endpoint)]))
    assert asyncio.run(app.ahandle_http(make_request(), make_context(), AsyncRecorder(log))) is None
    # the head goes with the first part (the app's http.response.start says no
    # more_body yet); Starlette ends with an empty part
    assert [e for e in log if e[0] != "chunk" or e[1]] == [
        ("made", 0), ("start", 200, "text/event-stream; charset=utf-8"),
        ("chunk", b"data: 0\n\n"), ("made", 1), ("chunk", b"data: 1\n\n"),
        ("made", 2), ("chunk", b"data: 2\n\n"), ("end",)]


def test_background_task_runs_after_the_response_is_handed_on():
    log: list = []

    async def task():
        await asyncio.sleep(0)
        log.append(("task",))

    async def endpoint(request):
        return JSONResponse({"queued": True}, background=BackgroundTask(task))

    app = AsgiApp(Starlette(routes=[Route("/", endpoint)]))
    assert asyncio.run(app.ahandle_http(make_request(), make_context(), AsyncRecorder(log))) is None
    assert log == [("complete", 200, b'{"queued":true}'), ("task",)]


def test_wsgi_generator_streams_and_a_list_is_sent_whole():
    log: list = []

    def gen():
        for n in range(2):
            log.append(("made", n))
            yield b"%d" % n

    def streaming(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()

    assert WsgiApp(streaming).handle_http(make_request(), make_context(), SyncRecorder(log)) is None
    # PEP 3333: the head goes with the first non-empty item
    assert log == [("made", 0), ("start", 200, "text/plain"), ("chunk", b"0"), ("made", 1),
                   ("chunk", b"1"), ("end",)]

    log.clear()

    def whole(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"a", b"b"]

    resp = WsgiApp(whole).handle_http(make_request(), make_context(), SyncRecorder(log))
    assert (resp.status, resp.body, log) == (200, b"ab", [])


def test_wsgi_response_with_a_length_is_sent_whole():
    def sized(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return iter([b"o", b"k"])

    log: list = []
    resp = WsgiApp(sized).handle_http(make_request(), make_context(), SyncRecorder(log))
    assert (resp.body, log) == (b"ok", [])


def test_cancel_closes_the_wsgi_iterable():
    log: list = []

    def gen():
        try:
            while True:
                yield b"x"
        finally:
            log.append(("closed",))

    def app(environ, start_response):
        start_response("200 OK", [])
        return gen()

    with pytest.raises(StreamCancelled):
        WsgiApp(app).handle_http(make_request(), make_context(), SyncRecorder(log, cancel_after=2))
    assert log[-1] == ("closed",)
