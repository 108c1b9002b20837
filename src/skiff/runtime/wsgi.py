"""WSGI apps (Flask, Django, Bottle, ...) per PEP 3333.

``SCRIPT_NAME`` is the mount and ``PATH_INFO`` the path below it, so frameworks
build prefixed URLs (Flask's ``url_for``). A response whose length is known (a
list or tuple, or a Content-Length header: Flask's and Django's ordinary
responses) is sent whole, in one frame; any other iterable (a generator) streams
through the worker's responder, each item as the app yields it. The iterable is
always closed, also when the gateway cancels the stream.
"""

from __future__ import annotations

import io
import sys

from skiff.ipc import HttpRequest, Response

from ._host import split_host
from .context import InvokeContext
from .loaded import LoadedApp
from .streaming import Responder


def build_environ(req: HttpRequest) -> dict:
    name, port = split_host(req.host, req.scheme)
    body = req.body
    environ = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": _wsgi_str(req.mount),
        "PATH_INFO": _wsgi_str(req.path),
        "QUERY_STRING": req.query,
        "SERVER_NAME": name or "localhost",
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": req.client,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": req.scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,  # the whole body is here; no chunked reads
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for header, value in req.headers:
        if header == "content-type":
            environ["CONTENT_TYPE"] = value
        elif header == "content-length":
            environ["CONTENT_LENGTH"] = value
        else:
            key = "HTTP_" + header.upper().replace("-", "_")
            prev = environ.get(key)
            if prev is None:
                environ[key] = value
            else:
                environ[key] = f"{prev}; {value}" if key == "HTTP_COOKIE" else f"{prev},{value}"
    if body:
        # The gateway has the whole body, so its length is known even for chunked uploads.
        environ["CONTENT_LENGTH"] = str(len(body))
    if "HTTP_HOST" not in environ and req.host:
        environ["HTTP_HOST"] = req.host
    return environ


def _wsgi_str(text: str) -> str:
    # PEP 3333 "native strings": the UTF-8 bytes of the path, each as one latin-1 char.
    return text if text.isascii() else text.encode().decode("latin-1")


class WsgiApp(LoadedApp):
    kind = "wsgi"

    def handle_http(self, req: HttpRequest, ctx: InvokeContext,
                    out: Responder | None = None) -> Response | None:
        """The app's response; None when it was streamed through ``out``."""
        chunks: list[bytes] = []
        started: list = []  # [status line, headers] once start_response ran
        streaming = False

        def start_response(status: str, headers: list, exc_info: object = None):
            if started and exc_info is None:
                raise RuntimeError("start_response called twice without exc_info")
            if streaming and exc_info is not None:
                raise exc_info[1].with_traceback(exc_info[2])  # type: ignore[index] # PEP 3333
            # Nothing is sent before the first item, so a later call (with
            # exc_info) may simply replace the first.
            started[:] = (status, headers)
            return chunks.append  # the legacy write() callable

        result = self.target(build_environ(req), start_response)
        try:
            if out is None or isinstance(result, list | tuple) or _has_length(started):
                for chunk in result:
                    if chunk:
                        chunks.append(chunk)
            else:
                for chunk in result:
                    if not chunk:
                        continue
                    if not streaming:
                        streaming = True
                        out.start(*_head(started))
                    chunks.append(chunk)
                    for part in chunks:
                        out.chunk(part)
                    chunks.clear()
                if streaming:
                    out.end()
                    return None
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = _head(started)
        return Response(id=req.id, status=status, headers=headers, body=b"".join(chunks))


def _has_length(started: list) -> bool:
    return bool(started) and any(k.lower() == "content-length" for k, _ in started[1])


def _head(started: list) -> tuple[int, list[tuple[str, str]]]:
    if not started:
        raise RuntimeError("WSGI app returned without calling start_response")
    status, headers = started
    return int(status[:3]), [(k.lower(), v) for k, v in headers]
