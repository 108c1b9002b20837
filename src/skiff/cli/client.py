"""A small client of the admin API for the CLI."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from skiff.cli.contexts import Target, resolve
from skiff.errors import SkiffError
from skiff.manifest import iter_app_files


class Client:
    def __init__(self, url: str | None = None, home: Path | None = None,
                 target: Target | None = None) -> None:
        self.target = target or resolve(url, home)
        self.url = self.target.url
        headers = {"authorization": f"Bearer {self.target.token}"} if self.target.token else {}
        self.http = httpx.Client(base_url=self.url + "/_skiff/api", headers=headers, timeout=600)

    def unreachable(self, exc: Exception) -> SkiffError:
        """The one "cannot connect" error: the URL, where it came from, what to do."""
        hint = ("start it with `skiff up`" if not self.target.explicit else
                "check the address, or choose another with --url, $SKIFF_URL or "
                "`skiff context use NAME`")
        return SkiffError(f"cannot reach Skiff at {self.url} (from {self.target.source}): "
                          f"{exc or type(exc).__name__}; {hint}", code="unreachable",
                          status=503, url=self.url, source=self.target.source)

    def send(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """One request, a transport failure raised as :meth:`unreachable`."""
        try:
            return self.http.request(method, url, **kw)
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from None

    def reachable(self, timeout: float = 1.0) -> bool:
        """Whether a Skiff server answers at the URL (not just anything on that port)."""
        try:
            return "x-skiff-node" in self.http.get("/health", timeout=timeout).headers
        except httpx.TransportError:
            return False

    def lines(self, method: str, path: str, **kw: Any) -> Iterator[dict]:
        """An NDJSON answer, one object at a time as the server writes it; an error
        status is raised as :meth:`call` raises it."""
        try:
            with self.http.stream(method, path, **kw) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._raise(resp)
                for line in resp.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from None

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        resp = self.send(method, path, **kw)
        if resp.status_code >= 400:
            self._raise(resp)
        return resp

    @staticmethod
    def _raise(resp: httpx.Response) -> None:
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                raise SkiffError(err.get("message", resp.text), code=err.get("code", "error"),
                                 status=resp.status_code,
                                 **{k: v for k, v in err.items() if k not in ("message", "code")})
            except (ValueError, KeyError, TypeError, AttributeError):
                if resp.headers.get("content-type", "").startswith("application/json") and \
                        "detail" in resp.text:
                    raise SkiffError(f"bad request: {resp.json()['detail']}", code="bad_request",
                                     status=resp.status_code) from None
                raise SkiffError(resp.text or resp.reason_phrase, status=resp.status_code) from None

    def json(self, method: str, path: str, **kw: Any) -> Any:
        return self.call(method, path, **kw).json()


def pack(app_dir: Path) -> bytes:
    """The app directory as .tar.gz, without caches, virtualenvs and VCS data."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel in iter_app_files(app_dir):
            tar.add(app_dir / rel, arcname=str(rel), recursive=False)
    return buf.getvalue()
