"""Test your Skiff app in-process: no server, no instance process, no network.

``AppClient`` reads the app's ``skiff.yaml``, imports the handler through the
same runtime the platform uses, and turns requests into the same calls an
instance makes: a Lambda handler gets the API Gateway HTTP API (2.0) event and
a Lambda context, an ASGI app an ``http`` scope (its lifespan startup runs once,
shutdown on ``close()``), a WSGI app a PEP 3333 environ. Files under
``spec.static`` are served first, as the gateway does::

    from skiff.testing import AppClient

    def test_pick():
        with AppClient("examples/where2eat") as client:
            r = client.get("/api/pick", query={"budget": 2})
            assert r.status_code == 200
            assert r.json()["price"] <= 2

            assert client.post("/api/places", json={"name": "Pizza"}).status_code == 400
            assert b"<html" in client.get("/").content            # public/index.html

    def test_direct_invoke():
        with AppClient("apps/report") as client:
            assert client.invoke({"day": "2024-05-01"}) == {"rows": 3}

While a call runs, ``spec.env`` (plus ``env=`` overrides) is in ``os.environ``
and the working directory is the app directory, as in an instance. Paths are
what a browser would request: with ``mount="/shop"`` the app answers
``client.get("/shop/items")``. ``invoke`` passes the event and the result
through JSON, so a result the platform could not return fails here too
(``skiff.runtime.BadResult``).

Modules imported from the app directory are forgotten on ``close()``, so
several apps with an ``app.py`` each can be tested in one session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as _json
import mimetypes
import os
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

from skiff.bus import MemoryBroker, validate_event
from skiff.ipc import HttpRequest
from skiff.runtime import InvokeContext, LoadedApp, encode_result, load_app
from skiff.runtime.environment import DEFAULTS, instance_environment
from skiff.sdk import client as sdk_client
from skiff.sdk.services import Services
from skiff.store.kv import MemoryKV

__all__ = ["AppClient", "AppResponse"]

_NO_JSON: Any = object()
Headers = Mapping[str, str] | Sequence[tuple[str, str]]
Query = Mapping[str, Any] | Sequence[tuple[str, Any]] | str


class AppResponse:
    """What the app answered. ``headers`` is a dict with lowercase names
    (repeated headers joined by ", "); ``header_list`` keeps every line, e.g.
    each ``set-cookie``."""

    __slots__ = ("status_code", "headers", "header_list", "content")

    def __init__(self, status_code: int, header_list: list[tuple[str, str]], content: bytes):
        self.status_code = status_code
        self.header_list = header_list
        self.content = content
        headers: dict[str, str] = {}
        for name, value in header_list:
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.headers = headers

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return _json.loads(self.content)

    def __repr__(self) -> str:
        return f"<AppResponse [{self.status_code}] {len(self.content)} bytes>"


@dataclass
class _AppSpec:
    """The few manifest fields the client needs."""

    name: str
    handler: str | None
    kind: str | None
    env: dict[str, str] = field(default_factory=dict)
    memory_mb: int = 256
    timeout_s: float = 30.0
    static_dir: str | None = None
    static_path: str = "/"
    payload_format: str = "2.0"


class AppClient:
    """Run the app in ``app_dir`` in this process. Use it as a context manager,
    or call ``close()`` (runs ASGI shutdown and forgets the app's modules)."""

    def __init__(self, app_dir: str | os.PathLike[str], *, mount: str = "",
                 host: str = "testserver", env: Mapping[str, str] | None = None,
                 client_ip: str = "127.0.0.1") -> None:
        self.app_dir = Path(app_dir).resolve()
        self.spec = _read_spec(self.app_dir)
        self.mount = mount.rstrip("/")
        self.host = host
        self.client_ip = client_ip
        self._env = {
            **DEFAULTS,
            **self.spec.env,
            **(env or {}),
            **instance_environment(app=self.spec.name, revision="test",
                                   handler=self.spec.handler, code_dir=str(self.app_dir),
                                   memory_mb=self.spec.memory_mb),
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # skiff.sdk reaches an in-memory platform: what the app stored, sent and
        # published is here for the test to look at
        self.kv = MemoryKV()
        self.broker = MemoryBroker()
        self.published: list[dict] = []
        self._services = Services(
            self.kv, send=lambda q, body, attrs, delay: self.broker.send(
                q, body, attributes=attrs, delay=delay),
            publish=self._publish)
        try:
            with self._inside():
                self.app: LoadedApp = load_app(
                    str(self.app_dir), self.spec.handler, self.spec.kind,
                    static_only=self.spec.handler is None or self.spec.kind == "static")
                if self.app.is_async:
                    self._loop = asyncio.new_event_loop()
                    self._loop.run_until_complete(self.app.startup())
        except BaseException:
            if self._loop is not None:
                self._loop.close()
            self._forget_modules()
            raise

    @property
    def kind(self) -> str:
        return self.app.kind

    # --- HTTP -----------------------------------------------------------------

    def request(self, method: str, path: str, *, headers: Headers | None = None,
                query: Query | None = None, json: Any = _NO_JSON,
                data: bytes | str | Mapping[str, Any] | None = None,
                cookies: Mapping[str, str] | None = None) -> AppResponse:
        """Send one request. ``json=`` encodes a JSON body, ``data=`` sends bytes
        or text as is, or a dict as a form."""
        path, _, query_string = path.partition("?")
        if query:
            extra = query if isinstance(query, str) else urlencode(query, doseq=True)
            query_string = f"{query_string}&{extra}" if query_string else extra
        items = headers.items() if isinstance(headers, Mapping) else (headers or ())
        header_list = [(name.lower(), str(value)) for name, value in items]
        names = {name for name, _ in header_list}

        body = b""
        if json is not _NO_JSON:
            body = _json.dumps(json).encode()
            if "content-type" not in names:
                header_list.append(("content-type", "application/json"))
        elif isinstance(data, Mapping):
            body = urlencode(data, doseq=True).encode()
            if "content-type" not in names:
                header_list.append(("content-type", "application/x-www-form-urlencoded"))
        elif data is not None:
            body = data.encode() if isinstance(data, str) else bytes(data)
        if body and "content-length" not in names:
            header_list.append(("content-length", str(len(body))))
        if cookies:
            header_list.append(("cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())))
        if "host" not in names:
            header_list.append(("host", self.host))

        path = unquote(path) or "/"
        if self.mount:
            if path != self.mount and not path.startswith(self.mount + "/"):
                return _not_found(f"{path} is outside the app's mount {self.mount}")
            path = path[len(self.mount):] or "/"
        method = method.upper()
        if method in ("GET", "HEAD") and (static := self._static_file(path)) is not None:
            return static

        self._check_open()
        req = HttpRequest(
            id=str(uuid.uuid4()), method=method, path=path, query=query_string,
            headers=header_list, body=body, scheme="http", host=self.host,
            client=self.client_ip, mount=self.mount, deadline_ms=self._deadline(),
            payload_format=self.spec.payload_format)
        ctx = self._context(req.id, req.deadline_ms)
        with self._inside():
            if self._loop is not None:
                resp = self._loop.run_until_complete(self.app.ahandle_http(req, ctx))
            else:
                resp = self.app.handle_http(req, ctx)
        return AppResponse(resp.status, list(resp.headers), resp.body)

    def get(self, path: str, **kwargs: Any) -> AppResponse:
        return self.request("GET", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> AppResponse:
        return self.request("HEAD", path, **kwargs)

    def options(self, path: str, **kwargs: Any) -> AppResponse:
        return self.request("OPTIONS", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> AppResponse:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> AppResponse:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> AppResponse:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> AppResponse:
        return self.request("DELETE", path, **kwargs)

    # --- direct invocation ---------------------------------------------------

    def invoke(self, event: Any = None) -> Any:
        """Invoke a Lambda handler directly with ``event``, as ``skiff invoke``
        does; returns the handler's result as the caller would decode it."""
        self._check_open()
        payload = _json.loads(_json.dumps(event))  # the handler gets a fresh JSON copy
        request_id = str(uuid.uuid4())
        with self._inside():
            result = self.app.handle_event(payload, self._context(request_id, self._deadline()))
        return _json.loads(encode_result(result))

    # --- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._loop is not None:
                with self._inside():
                    self._loop.run_until_complete(self.app.shutdown())
                    self._loop.run_until_complete(self._loop.shutdown_asyncgens())
                    self._loop.run_until_complete(self._loop.shutdown_default_executor())
        finally:
            if self._loop is not None:
                self._loop.close()
            self._forget_modules()

    def __enter__(self) -> AppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------

    def _context(self, request_id: str, deadline_ms: float) -> InvokeContext:
        return InvokeContext(request_id=request_id, app=self.spec.name, revision="test",
                             memory_mb=self.spec.memory_mb, deadline_ms=deadline_ms)

    def _deadline(self) -> float:
        return time.time() * 1000 + self.spec.timeout_s * 1000

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this AppClient is closed")

    def _publish(self, event: dict) -> dict:
        self.published.append(validate_event(event))
        return {"id": event["id"], "matched": []}

    @contextlib.contextmanager
    def _inside(self) -> Iterator[None]:
        """The app's environment variables, working directory and skiff.sdk, for one call."""
        saved = {name: os.environ.get(name) for name in self._env}
        os.environ.update(self._env)
        sdk_client.use_transport(lambda op, args: self._services.call(self.spec.name, op, args))
        try:
            with contextlib.chdir(self.app_dir):
                yield
        finally:
            sdk_client.use_transport(None)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def _static_file(self, path: str) -> AppResponse | None:
        if self.spec.static_dir is None:
            return None
        prefix = self.spec.static_path.rstrip("/")
        if prefix and path != prefix and not path.startswith(prefix + "/"):
            return None
        root = (self.app_dir / self.spec.static_dir).resolve()
        target = (root / path[len(prefix):].lstrip("/")).resolve()
        if not target.is_relative_to(root):
            return None
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            return None
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
            ctype += "; charset=utf-8"
        content = target.read_bytes()
        return AppResponse(200, [("content-type", ctype),
                                 ("content-length", str(len(content)))], content)

    def _forget_modules(self) -> None:
        root = str(self.app_dir) + os.sep
        for name, module in list(sys.modules.items()):
            if (getattr(module, "__file__", None) or "").startswith(root):
                del sys.modules[name]
        with contextlib.suppress(ValueError):
            sys.path.remove(str(self.app_dir))


def _not_found(message: str) -> AppResponse:
    body = _json.dumps({"error": {"code": "route_not_found", "message": message}}).encode()
    return AppResponse(404, [("content-type", "application/json")], body)


# --- the manifest ------------------------------------------------------------


def _read_spec(app_dir: Path) -> _AppSpec:
    path = app_dir / "skiff.yaml"
    try:
        from skiff.manifest import load_manifest
    except ImportError:  # the manifest package is optional for this module
        return _read_yaml(path)
    manifest = load_manifest(path)
    spec = manifest.spec
    static = spec.static
    resources = spec.resources
    return _AppSpec(
        name=manifest.name, handler=spec.handler, kind=spec.kind, env=dict(spec.env or {}),
        memory_mb=resources.memory_mb,
        timeout_s=float(getattr(resources, "timeout_s", None)
                        or getattr(resources, "timeout", None) or 30.0),
        static_dir=static.dir if static else None,
        static_path=(static.path or "/") if static else "/",
        payload_format=spec.http.payload_format,
    )


def _read_yaml(path: Path) -> _AppSpec:
    """Just the fields above, straight from the YAML (no validation)."""
    import yaml

    doc = yaml.safe_load(path.read_text()) or {}
    spec = doc.get("spec") or {}
    resources = spec.get("resources") or {}
    static = spec.get("static")
    if isinstance(static, str):
        static = {"dir": static}
    env = {k: ("true" if v is True else "false" if v is False else str(v))
           for k, v in (spec.get("env") or {}).items()}
    return _AppSpec(
        name=(doc.get("metadata") or {}).get("name") or path.parent.name,
        handler=spec.get("handler"), kind=spec.get("kind"), env=env,
        memory_mb=int(resources.get("memoryMB") or resources.get("memory_mb") or 256),
        timeout_s=_seconds(resources.get("timeout", 30)),
        static_dir=static.get("dir") if static else None,
        static_path=static.get("path", "/") if static else "/",
        payload_format=str((spec.get("http") or {}).get("payloadFormat", "2.0")),
    )


def _seconds(value: Any) -> float:
    if isinstance(value, str):
        for unit, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
            if value.endswith(unit):
                return float(value[: -len(unit)]) * factor
    return float(value)
