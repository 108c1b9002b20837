"""A Lambda handler's result mapped to a response, as API Gateway (2.0) does."""

import base64
import datetime
import math
from decimal import Decimal

import pytest

from skiff.runtime import BadResult, encode_result, to_response

JSON = ("content-type", "application/json")

MAPPING = [
    # (result, status, headers, body)
    ({"statusCode": 201, "body": "made"}, 201, [JSON], b"made"),
    ({"statusCode": 204}, 204, [JSON], b""),
    ({"statusCode": "404", "body": ""}, 404, [JSON], b""),
    ({"statusCode": 200, "headers": {"Content-Type": "text/html", "X-Count": 3, "X-On": True},
      "body": "<p>hi</p>"},
     200, [("content-type", "text/html"), ("x-count", "3"), ("x-on", "true")], b"<p>hi</p>"),
    ({"statusCode": 200, "cookies": ["a=1", "b=2; Path=/"], "body": "{}"},
     200, [("set-cookie", "a=1"), ("set-cookie", "b=2; Path=/"), JSON], b"{}"),
    ({"statusCode": 200, "isBase64Encoded": True, "headers": {"content-type": "image/png"},
      "body": base64.b64encode(b"\x89PNG\x00").decode()},
     200, [("content-type", "image/png")], b"\x89PNG\x00"),
    ({"statusCode": 200, "body": "héllo"}, 200, [JSON], "héllo".encode()),
    ({"message": "hi", "n": 1}, 200, [JSON], b'{"message": "hi", "n": 1}'),
    ([1, "two", None], 200, [JSON], b'[1, "two", null]'),
    ("text", 200, [JSON], b'"text"'),
    ("quote \" and ü", 200, [JSON], '"quote \\" and ü"'.encode()),
    (42, 200, [JSON], b"42"),
    (1.5, 200, [JSON], b"1.5"),
    (True, 200, [JSON], b"true"),
    (None, 200, [JSON], b"null"),
    ((1, 2), 200, [JSON], b"[1, 2]"),
]


@pytest.mark.parametrize(("result", "status", "headers", "body"), MAPPING)
def test_result_mapping(result, status, headers, body):
    resp = to_response("r1", result)
    assert (resp.id, resp.status, resp.headers, resp.body) == ("r1", status, headers, body)


@pytest.mark.parametrize(("result", "type_name"), [
    ({"a", "b"}, "set"),
    ({"when": datetime.date(2024, 1, 1)}, "date"),
    ([b"raw"], "bytes"),
    (object(), "object"),
])
def test_values_json_rejects_are_bad_results(result, type_name):
    with pytest.raises(BadResult) as info:
        to_response("r1", result)
    assert str(info.value) == (f"handler returned a value of type '{type_name}' "
                               "that is not JSON serializable")
    assert info.value.code == "bad_result"


@pytest.mark.parametrize(("result", "fragment"), [
    ({"statusCode": "teapot"}, "statusCode must be an integer"),
    ({"statusCode": 200, "body": {"a": 1}}, "'body' must be a string, got 'dict'"),
    ({"statusCode": 200, "headers": ["x"]}, "'headers' must be an object"),
    ({"statusCode": 200, "body": "!!!", "isBase64Encoded": True}, "not base64"),
    ({(1, 2): "tuple key"}, "not JSON serializable"),
])
def test_malformed_proxy_results(result, fragment):
    with pytest.raises(BadResult, match=fragment):
        to_response("r1", result)


def test_circular_result_is_a_bad_result():
    loop: list = []
    loop.append(loop)
    with pytest.raises(BadResult, match="Circular reference"):
        encode_result(loop)


def test_decimal_is_a_number_as_in_the_lambda_runtime():
    """DynamoDB items carry Decimal; the Lambda Python runtime encodes them as numbers."""
    assert encode_result({"n": Decimal("3"), "x": Decimal("1.25")}) == b'{"n": 3, "x": 1.25}'


def test_nan_follows_json_dumps():
    assert encode_result([math.nan]) == b"[NaN]"


def test_strings_encode_like_json_dumps_without_ascii_escapes():
    text = "tab\t nl\n ctl\x01 é 😀 \u2028"
    import json

    assert encode_result(text) == json.dumps(text, ensure_ascii=False).encode()


def test_lone_surrogate_is_a_bad_result():
    with pytest.raises(BadResult):
        encode_result("\ud800")


def test_base64_body_with_line_breaks_is_accepted():
    body = base64.encodebytes(b"x" * 100).decode()
    resp = to_response("r1", {"statusCode": 200, "isBase64Encoded": True, "body": body})
    assert resp.body == b"x" * 100
