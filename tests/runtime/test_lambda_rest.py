"""API Gateway REST API (payload 1.0) events and result mapping."""

from __future__ import annotations

import json
import os

import pytest

from skiff.runtime.exceptions import BadResult
from skiff.runtime.lambda_rest import build_rest_event, to_rest_response
from skiff.testing import AppClient

from .conftest import GOLDEN, make_request
from .test_lambda_event import FIXED_MS, golden_request

APPS = GOLDEN.parent / "apps"
UPDATE = os.environ.get("SKIFF_UPDATE_GOLDEN") == "1"


def test_event_matches_the_golden_file():
    """The fixed request at a fixed time gives exactly the stored v1 event (the shape
    of AWS's published apigw-rest sample: every key present, null when empty)."""
    event = build_rest_event(golden_request(), "where2eat", now_ms=FIXED_MS)
    path = GOLDEN / "rest_event.json"
    if UPDATE:
        path.write_text(json.dumps(event, indent=2) + "\n")
    expected = json.loads(path.read_text())
    assert event == expected
    assert list(event) == list(expected)


def test_root_and_empty_request():
    event = build_rest_event(make_request(path="/"), now_ms=FIXED_MS)
    assert (event["resource"], event["pathParameters"]) == ("/", None)
    for key in ("queryStringParameters", "multiValueQueryStringParameters", "body",
                "stageVariables"):
        assert event[key] is None
    assert event["isBase64Encoded"] is False


def test_binary_body_is_base64():
    event = build_rest_event(make_request(headers=[("content-type", "image/png")],
                                          body=b"\x89PNG"), now_ms=FIXED_MS)
    assert event["isBase64Encoded"] is True and event["body"] == "iVBORw=="


def test_multi_value_headers_are_sent_and_merged_with_headers():
    resp = to_rest_response("r", {"statusCode": 302, "headers": {"Location": "/x", "X-A": "1"},
                                  "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"],
                                                        "X-A": ["1", "2"]}})
    assert resp.status == 302
    assert resp.headers == [("set-cookie", "a=1"), ("set-cookie", "b=2"), ("x-a", "1"),
                            ("x-a", "2"), ("location", "/x"),
                            ("content-type", "application/json")]


@pytest.mark.parametrize("result", [{"body": "x"}, "text", None, [1]])
def test_a_result_without_status_code_is_a_malformed_proxy_response(result):
    with pytest.raises(BadResult):
        to_rest_response("r", result)


def test_powertools_rest_resolver_runs_unchanged():
    """APIGatewayRestResolver reads httpMethod, path and multiValue* fields; with
    payloadFormat 1.0 it routes, reads the query and sends repeated headers."""
    with AppClient(APPS / "powertools_rest", mount="/ledger") as client:
        r = client.post("/ledger/entries", json={"id": "7", "amount": 3})
        assert r.status_code == 201 and r.json() == {"id": "7", "amount": 3}
        assert [v for k, v in r.header_list if k == "x-tag"] == ["a", "b"]
        assert client.get("/ledger/entries/7").json() == {"id": "7", "amount": 3}
        got = client.get("/ledger/search?q=rent&tag=a&tag=b").json()
        assert got == {"q": "rent", "tags": ["a", "b"], "method": "GET", "stage": "Prod"}


def test_without_routes_the_app_is_behind_one_greedy_resource():
    event = build_rest_event(make_request(path="/a/b"), now_ms=FIXED_MS)
    assert (event["resource"], event["pathParameters"]) == ("/{proxy+}", {"proxy": "a/b"})
    assert event["requestContext"]["resourcePath"] == "/{proxy+}"
