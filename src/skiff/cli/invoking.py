"""`skiff invoke`: the event an app of each kind expects, built from --path,
--method, --header and --body; a raw event from --data or --event FILE; run on the
server, or in this process with --local DIR (skiff.testing, no server).

    Lambda handler, no raw event → an API Gateway event (payload 2.0, or 1.0 when
                                   spec.http.payloadFormat says so), never None
    ASGI / WSGI / static app     → a real HTTP request to the app's route
    --data / --event             → exactly that event, as `sam local invoke -e`"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skiff.cli.events import apigw_http, apigw_rest, parse_headers
from skiff.cli.failures import parse_json
from skiff.errors import SkiffError


def raw_event(data: str | None, event_file: Path | None) -> str | None:
    """The raw event text, checked to be JSON, or None."""
    if data is not None and event_file is not None:
        raise SkiffError("give --data or --event, not both", code="bad_usage", status=400)
    if event_file is not None:
        try:
            data = event_file.read_text()
        except OSError as exc:
            raise SkiffError(f"cannot read --event {event_file}: {exc.strerror or exc}",
                             code="bad_event", status=400) from None
    if data is not None:
        try:
            json.loads(data)
        except ValueError as exc:
            where = f"--event {event_file}" if event_file else "--data"
            raise SkiffError(f"{where} must be JSON: {exc}", code="bad_event",
                             status=400) from None
    return data


def http_event(app: str, payload_format: str, method: str, path: str,
               headers: list[str], body: str | None) -> dict:
    path, _, query = path.partition("?")
    build = apigw_rest if payload_format == "1.0" else apigw_http
    return build(app=app, method=method, path=path, query=query,
                 headers=parse_headers(headers), body=body or "")


def remote(client: Any, name: str, raw: str | None, method: str, path: str,
           headers: list[str], body: str | None, is_async: bool) -> tuple[int | None, str]:
    """(HTTP status of an app request or None for an invocation, the text to print)."""
    invoke_headers = {"content-type": "application/json"}
    if is_async:
        invoke_headers["x-skiff-invocation-type"] = "Event"
    if raw is None:
        info = client.json("GET", f"/apps/{name}")
        kind = info.get("kind")
        if kind != "lambda" and not is_async:  # an HTTP app: a request to its route
            url = f"{client.url}{info.get('path') or f'/{name}/'}".rstrip("/") + (
                path if path.startswith("/") else f"/{path}")
            resp = client.send(method.upper(), url, content=(body or "").encode(),
                               headers=dict(parse_headers(headers)))
            return resp.status_code, resp.text
        fmt = (info.get("manifest") or {}).get("spec", {}).get("http", {}).get(
            "payloadFormat", "2.0")
        raw = json.dumps(http_event(name, fmt, method, path, headers, body))
    resp = client.call("POST", f"/apps/{name}/invoke", content=raw.encode(),
                       headers=invoke_headers)
    return None, resp.text


def local(directory: Path, raw: str | None, method: str, path: str, headers: list[str],
          body: str | None) -> tuple[int | None, str]:
    from skiff.testing import AppClient

    with AppClient(directory) as app:
        if raw is not None:
            return None, json.dumps(app.invoke(parse_json(raw, "the event")))
        r = app.request(method.upper(), path, headers=parse_headers(headers),
                        data=body.encode() if body else None)
        return r.status_code, r.text
