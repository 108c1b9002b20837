"""The proxy's HTTP/1.1 head handling, without sockets."""

from __future__ import annotations

import json

import pytest

from skiff.egress import BadProxyRequest, EgressDenied
from skiff.egress.wire import Target, error_response, forward_head, parse_head, parse_target


def head(text: str):  # noqa: ANN201
    return parse_head(text.replace("\n", "\r\n").encode("latin-1"))


@pytest.mark.parametrize(("request_line", "target"), [
    ("CONNECT api.example.com:443 HTTP/1.1", Target("api.example.com", 443, None)),
    ("CONNECT API.Example.com.:443 HTTP/1.1", Target("api.example.com", 443, None)),
    ("CONNECT [2606:4700::1111]:443 HTTP/1.1", Target("2606:4700::1111", 443, None)),
    ("GET http://api.example.com/a/b?c=d HTTP/1.1", Target("api.example.com", 80, "/a/b?c=d")),
    ("GET http://api.example.com HTTP/1.1", Target("api.example.com", 80, "/")),
    ("POST http://user:pw@api.example.com:8080/x HTTP/1.0", Target("api.example.com", 8080, "/x")),
])
def test_targets(request_line: str, target: Target) -> None:
    """CONNECT authority and absolute-form URLs both give a normalized host, port and path."""
    assert parse_target(head(request_line + "\n\n")) == target


@pytest.mark.parametrize("request_line", [
    "CONNECT api.example.com HTTP/1.1",          # CONNECT needs a port
    "CONNECT ::1:443 HTTP/1.1",                  # IPv6 needs brackets
    "CONNECT api.example.com:99999 HTTP/1.1",
    "CONNECT bad_host!:443 HTTP/1.1",
    "GET /relative HTTP/1.1",
    "GET https://api.example.com/ HTTP/1.1",
    "GET ftp://api.example.com/ HTTP/1.1",
    "GET http://127.1/ HTTP/1.1",                # inet_aton shorthand is neither name nor IP
])
def test_bad_targets(request_line: str) -> None:
    """Targets the proxy cannot judge safely are a 400, not a guess."""
    with pytest.raises(BadProxyRequest):
        parse_target(head(request_line + "\n\n"))


@pytest.mark.parametrize("raw", [
    b"GET http://a.example.com/ HTTP/2\r\n\r\n",
    b"GET http://a.example.com/ HTTP/1.1\r\nNo-Colon\r\n\r\n",
    b"GET http://a.example.com/ HTTP/1.1\r\nX: a\nInjected: b\r\n\r\n",
    b"GET http://a.example.com/ HTTP/1.1\r\n folded: x\r\n\r\n",
])
def test_malformed_heads(raw: bytes) -> None:
    """Bare LFs and folded lines are refused so nothing smuggles a header upstream."""
    with pytest.raises(BadProxyRequest):
        parse_head(raw)


def test_forward_head_rewrites_for_the_upstream() -> None:
    """Origin-form, the target's Host, hop-by-hop and Connection-listed headers dropped."""
    request = head("GET http://api.example.com:8080/p?q=1 HTTP/1.1\nHost: spoofed.example\n"
                   "Proxy-Connection: keep-alive\nConnection: keep-alive, X-Hop\nX-Hop: 1\n"
                   "Proxy-Authorization: Basic eDp5\nAccept: */*\nContent-Length: 3\n\n")
    forwarded = forward_head(request, parse_target(request)).decode()
    assert forwarded == ("GET /p?q=1 HTTP/1.1\r\nHost: api.example.com:8080\r\nAccept: */*\r\n"
                         "Content-Length: 3\r\nConnection: close\r\n\r\n")


def test_forward_head_keeps_http10_and_default_port() -> None:
    request = head("GET http://api.example.com/ HTTP/1.0\n\n")
    assert forward_head(request, parse_target(request)).startswith(
        b"GET / HTTP/1.0\r\nHost: api.example.com\r\n")


def test_error_response_carries_code_rule_and_json() -> None:
    """The refusal is a complete response: status, code header, rule header, JSON body."""
    raw = error_response(EgressDenied("no", rule="api.example.com:443"))
    head_text, _, body = raw.partition(b"\r\n\r\n")
    assert head_text.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"X-Skiff-Egress-Denied: api.example.com:443" in head_text
    assert b"Content-Length: %d" % len(body) in head_text
    assert json.loads(body) == {"error": {"code": "egress_denied", "message": "no",
                                          "rule": "api.example.com:443"}}
