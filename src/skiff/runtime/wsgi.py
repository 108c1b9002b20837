"""WSGI apps (Flask, Django, Bottle, ...) per PEP 3333.

``SCRIPT_NAME`` is the mount and ``PATH_INFO`` the path below it, so frameworks
build prefixed URLs (Flask's ``url_for``). The response is buffered; the
iterable is always closed.
"""

from __future__ import annotations

import io
import sys

from skiff.ipc import HttpRequest, Response

from ._host import split_host
from .context import InvokeContext
from .loaded import LoadedApp


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

    def handle_http(self, req: HttpRequest, ctx: InvokeContext) -> Response:
        chunks: list[bytes] = []
        started: list = []  # [status line, headers] once start_response ran

        def start_response(status: str, headers: list, exc_info: object = None):
            if started and exc_info is None:
                raise RuntimeError("start_response called twice without exc_info")
            # Nothing is sent before the app returns, so a later call (with
            # exc_info) may simply replace the first.
            started[:] = (status, headers)
            return chunks.append  # the legacy write() callable

        result = self.target(build_environ(req), start_response)
        try:
            for chunk in result:
                if chunk:
                    chunks.append(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise RuntimeError("WSGI app returned without calling start_response")
        status, headers = started
        return Response(id=req.id, status=int(status[:3]),
                        headers=[(k.lower(), v) for k, v in headers], body=b"".join(chunks))
