"""Split a Host header into (name, port) for ASGI ``server`` and WSGI SERVER_*."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=64)  # a handful of distinct hosts per app; parsing on every request is waste
def split_host(host: str, scheme: str) -> tuple[str, int]:
    """``("example.com:8080", "http") -> ("example.com", 8080)``; the scheme's
    default port when none is given; ``("", port)`` for an empty host."""
    default = 443 if scheme in ("https", "wss") else 80
    if host.startswith("["):  # IPv6 literal: [::1]:8000
        end = host.find("]")
        name, rest = host[: end + 1], host[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    return name, int(port) if port.isdigit() else default
