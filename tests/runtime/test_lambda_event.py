"""The API Gateway HTTP API (payload 2.0) event built from a request."""

import base64
import json

import pytest

from skiff.runtime import build_http_event

from .conftest import GOLDEN, make_request

FIXED_MS = 1583348638390  # 04/Mar/2020:19:03:58 +0000


def golden_request():
    return make_request(
        id="c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        method="POST",
        path="/items/42",
        query="color=red&size=m&color=blue&empty=",
        headers=[
            ("content-type", "application/json"),
            ("user-agent", "curl/8.5.0"),
            ("cookie", "session=abc; theme=dark"),
            ("x-trace", "one"),
            ("x-trace", "two"),
            ("host", "where2eat.example.test:8080"),
        ],
        body=b'{"name": "Pho Corner"}',
        host="where2eat.example.test:8080",
        mount="/where2eat",
        route_key="POST /items/{id}",
        path_params={"id": "42"},
    )


def test_event_matches_the_golden_file():
    """A fixed request at a fixed time gives exactly the stored event."""
    event = build_http_event(golden_request(), "where2eat", now_ms=FIXED_MS)
    expected = json.loads((GOLDEN / "http_event.json").read_text())
    assert event == expected
    assert list(event) == list(expected)  # API Gateway's field order, for readable dumps


def test_minimal_get_omits_optional_fields():
    """No cookies, query, body or route parameters: those keys are absent."""
    event = build_http_event(make_request(path="/"), "demo", now_ms=FIXED_MS)
    for key in ("cookies", "queryStringParameters", "body", "pathParameters", "stageVariables"):
        assert key not in event
    assert event["rawQueryString"] == ""
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["time"] == "04/Mar/2020:19:03:58 +0000"


def test_empty_path_is_root():
    assert build_http_event(make_request(path=""), now_ms=FIXED_MS)["rawPath"] == "/"


def test_cookies_from_several_headers_are_one_list():
    req = make_request(headers=[("cookie", "a=1;b=2"), ("cookie", " c=3 ; ")])
    event = build_http_event(req, now_ms=FIXED_MS)
    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert "cookie" not in event["headers"]


def test_repeated_query_parameters_are_joined_with_commas():
    req = make_request(query="tag=a&tag=b%20c&q=caf%C3%A9&flag")
    params = build_http_event(req, now_ms=FIXED_MS)["queryStringParameters"]
    assert params == {"tag": "a,b c", "q": "café", "flag": ""}


@pytest.mark.parametrize(("content_type", "body", "encoded"), [
    (None, b"plain words", False),
    ("text/plain; charset=utf-8", "héllo".encode(), False),
    ("application/json", b"{}", False),
    ("application/vnd.api+json", b"{}", False),
    ("application/x-www-form-urlencoded", b"a=1", False),
    ("application/octet-stream", b"abc", True),
    ("image/png", b"\x89PNG", True),
    (None, b"\xff\xfe\x00", True),
    ("text/plain", b"\xff\xfe\x00", True),
])
def test_body_is_base64_when_binary(content_type, body, encoded):
    """Text stays text; binary content types and invalid UTF-8 become base64."""
    headers = [("content-type", content_type)] if content_type else []
    event = build_http_event(make_request(method="POST", headers=headers, body=body),
                             now_ms=FIXED_MS)
    assert event["isBase64Encoded"] is encoded
    if encoded:
        assert base64.b64decode(event["body"]) == body
    else:
        assert event["body"] == body.decode()


@pytest.mark.parametrize(("route_key", "params"), [
    ("$default", {}),
    ("GET /items/{id}", {"id": "7"}),
    ("ANY /files/{proxy+}", {"proxy": "a/b.txt"}),
])
def test_path_parameters_are_the_ones_the_gateway_bound(route_key, params):
    event = build_http_event(make_request(path="/x", route_key=route_key, path_params=params),
                             now_ms=FIXED_MS)
    assert event.get("pathParameters") == (params or None)
    assert event["routeKey"] == event["requestContext"]["routeKey"] == route_key


def test_each_event_is_a_fresh_object():
    """Handlers may mutate their event; the next request must not see it."""
    req = make_request(headers=[("x-a", "1")], query="a=1")
    first = build_http_event(req, now_ms=FIXED_MS)
    first["headers"]["x-a"] = "changed"
    first["queryStringParameters"]["a"] = "changed"
    second = build_http_event(req, now_ms=FIXED_MS)
    assert second["headers"]["x-a"] == "1"
    assert second["queryStringParameters"]["a"] == "1"
