"""Just enough HTTP/1.1 for a forward proxy: read a request head, find the
target of CONNECT or of an absolute-form request, rewrite the head for the
upstream, and write an error answer. Bodies are never parsed: they are
relayed as bytes, which keeps the proxy small and framing-agnostic."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import SkiffError
from .errors import BadProxyRequest
from .rules import normalize_host

CONNECT_OK = b"HTTP/1.1 200 Connection Established\r\nProxy-Agent: skiff-egress\r\n\r\n"

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Headers about this hop only (RFC 9110 7.6.1), plus the proxy's own credentials.
_HOP_BY_HOP = {"connection", "proxy-connection", "keep-alive", "proxy-authorization",
               "proxy-authenticate", "te", "trailer", "upgrade", "host"}
_REASONS = {400: "Bad Request", 403: "Forbidden", 429: "Too Many Requests",
            502: "Bad Gateway", 504: "Gateway Timeout"}


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    size: int


@dataclass(frozen=True, slots=True)
class Target:
    """Where the client wants to go; ``path`` is None for a CONNECT tunnel."""

    host: str
    port: int
    path: str | None


async def read_head(reader: asyncio.StreamReader) -> RequestHead | None:
    """The request head, or None if the client closed before sending a byte."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise BadProxyRequest("the connection closed inside the request head") from None
    except asyncio.LimitOverrunError:
        raise BadProxyRequest("the request head is too large") from None
    return parse_head(raw)


def parse_head(raw: bytes) -> RequestHead:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not _TOKEN.match(parts[0]):
        raise BadProxyRequest(f"not an HTTP/1.1 request line: {lines[0][:100]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name) or any(c in value for c in "\r\n\0"):
            raise BadProxyRequest(f"malformed header line: {line[:100]!r}")
        headers.append((name, value.strip(" \t")))
    return RequestHead(parts[0].upper(), parts[1], parts[2], tuple(headers), len(raw))


def parse_target(head: RequestHead) -> Target:
    """The destination of a CONNECT (``host:port``) or absolute-form (``http://...``) request."""
    if head.method == "CONNECT":
        host, port = _authority(head.target, default_port=None)
        return Target(host, port, None)
    if head.target.startswith("/") or head.target == "*":
        raise BadProxyRequest("this is the egress proxy: send absolute-form requests "
                              "(GET http://host/path) or CONNECT host:port")
    url = urlsplit(head.target)
    if url.scheme.lower() == "https":
        raise BadProxyRequest("use CONNECT for https:// targets")
    if url.scheme.lower() != "http" or not url.netloc:
        raise BadProxyRequest(f"not an absolute http:// URL: {head.target[:100]!r}")
    host, port = _authority(url.netloc.rpartition("@")[2], default_port=80)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    return Target(host, port, path)


def _authority(text: str, default_port: int | None) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
        if ":" in host:
            raise BadProxyRequest(f"write IPv6 addresses in brackets: {text[:100]!r}")
    if not port_text:
        if default_port is None:
            raise BadProxyRequest(f"CONNECT needs host:port, got {text[:100]!r}")
        port_text = str(default_port)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise BadProxyRequest(f"bad port in {text[:100]!r}")
    try:
        return normalize_host(host), int(port_text)
    except ValueError:
        raise BadProxyRequest(f"not a host name or IP address: {host[:100]!r}") from None


def forward_head(head: RequestHead, target: Target) -> bytes:
    """The request as the upstream should see it: origin-form, its own Host, one request only."""
    listed = {option.strip().lower() for name, value in head.headers
              if name.lower() == "connection" for option in value.split(",")}
    host = f"[{target.host}]" if ":" in target.host else target.host
    authority = host if target.port == 80 else f"{host}:{target.port}"
    lines = [f"{head.method} {target.path} {head.version}", f"Host: {authority}"]
    lines += [f"{name}: {value}" for name, value in head.headers
              if name.lower() not in _HOP_BY_HOP and name.lower() not in listed]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_response(error: SkiffError) -> bytes:
    """A complete HTTP/1.1 answer for ``error``: JSON body, stable code in a header too."""
    body = json.dumps(error.to_dict()).encode()
    headers = [
        f"HTTP/1.1 {error.status} {_REASONS.get(error.status, 'Error')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Proxy-Agent: skiff-egress",
        f"X-Skiff-Error-Code: {error.code}",
    ]
    rule = error.details.get("rule")
    if error.status == 403 and isinstance(rule, str):
        headers.append(f"X-Skiff-Egress-Denied: {rule}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1") + body
