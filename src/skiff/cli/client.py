"""A small client of the admin API for the CLI."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import httpx

from skiff.config import Config
from skiff.errors import SkiffError
from skiff.manifest import iter_app_files


class Client:
    def __init__(self, url: str | None = None, home: Path | None = None) -> None:
        config = Config.resolve(home=home)
        self.url = (url or os.environ.get("SKIFF_URL") or self._discover(config)).rstrip("/")
        token = os.environ.get("SKIFF_ADMIN_TOKEN")
        if not token and (config.home / "admin-token").exists():
            token = (config.home / "admin-token").read_text().strip()
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url + "/_skiff/api", headers=headers, timeout=600)

    @staticmethod
    def _discover(config: Config) -> str:
        info = config.home / "server.json"
        if info.exists():
            return json.loads(info.read_text())["url"]
        return f"http://{config.host}:{config.port}"

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise SkiffError(f"cannot reach Skiff at {self.url} ({exc}); start it with `skiff up` "
                             "or pass --url", code="unreachable", status=503) from None
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                raise SkiffError(err.get("message", resp.text), code=err.get("code", "error"),
                                 status=resp.status_code,
                                 **{k: v for k, v in err.items() if k not in ("message", "code")})
            except (ValueError, KeyError, TypeError):
                if resp.headers.get("content-type", "").startswith("application/json") and \
                        "detail" in resp.text:
                    raise SkiffError(f"bad request: {resp.json()['detail']}", code="bad_request",
                                     status=resp.status_code) from None
                raise SkiffError(resp.text or resp.reason_phrase, status=resp.status_code) from None
        return resp

    def json(self, method: str, path: str, **kw: Any) -> Any:
        return self.call(method, path, **kw).json()


def pack(app_dir: Path) -> bytes:
    """The app directory as .tar.gz, without caches, virtualenvs and VCS data."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel in iter_app_files(app_dir):
            tar.add(app_dir / rel, arcname=str(rel), recursive=False)
    return buf.getvalue()
