"""CloudEvents over HTTP (binary, structured, batch), the AWS shapes handlers
receive (checked against Powertools' own models of them), partial-batch
responses and W3C trace context."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, SqsModel

from skiff.bus import Delivery, InvalidEvent
from skiff.bus.events import (
    parse_batch_response,
    parse_http_event,
    parse_http_events,
    queue_arn,
    to_binary,
    to_eventbridge,
    to_sqs_records,
    to_structured,
    validate_event,
)
from skiff.bus.tracecontext import (
    TraceContext,
    extract,
    inject,
    new_trace,
    parse_traceparent,
)

BINARY = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "/shop", "ce-type": "order.placed",
          "content-type": "application/json"}
STRUCT = {"specversion": "1.0", "id": "e-1", "source": "/shop", "type": "order.placed"}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


# -- parsing -------------------------------------------------------------------------
def test_binary_mode_with_json_data() -> None:
    """ce-* headers become attributes, content-type datacontenttype, and a JSON body data."""
    event = parse_http_event({**BINARY, "ce-time": "2026-01-02T03:04:05Z", "ce-tenant": "acme"},
                             b'{"total": 12}')
    assert event == {"specversion": "1.0", "id": "e-1", "source": "/shop",
                     "type": "order.placed", "datacontenttype": "application/json",
                     "time": "2026-01-02T03:04:05Z", "tenant": "acme", "data": {"total": 12}}


def test_binary_mode_accepts_asgi_byte_headers_and_percent_decodes() -> None:
    """Raw ASGI headers (bytes, any case) work, and header values are percent-decoded."""
    headers = [(k.upper().encode(), v.encode()) for k, v in BINARY.items()]
    headers.append((b"ce-subject", b"caf%C3%A9 menu"))
    event = parse_http_event(headers, b"[1, 2]")
    assert event["subject"] == "café menu"
    assert event["data"] == [1, 2]


@pytest.mark.parametrize("content_type, body, data", [
    ("text/plain; charset=utf-8", b"hello", "hello"),
    ("application/octet-stream", b"\x00\xff", b"\x00\xff"),
    ("application/vnd.shop+json", b'{"a": 1}', {"a": 1}),
], ids=["text is str", "other media is bytes", "+json is JSON"])
def test_binary_mode_data_follows_the_content_type(content_type: str, body: bytes,
                                                   data: object) -> None:
    """Binary-mode data is decoded by media type: JSON parsed, text decoded, the rest bytes."""
    assert parse_http_event({**BINARY, "content-type": content_type}, body)["data"] == data


def test_binary_mode_without_body_has_no_data() -> None:
    """An empty body means the event carries no data attribute at all."""
    assert "data" not in parse_http_event(BINARY, b"")


def test_structured_mode() -> None:
    """application/cloudevents+json carries attributes and data in one JSON document."""
    body = json.dumps({**STRUCT, "data": {"total": 12}, "priority": 3, "urgent": True}).encode()
    event = parse_http_event({"Content-Type": "application/cloudevents+json; charset=utf-8"},
                             body)
    assert event == {**STRUCT, "data": {"total": 12}, "priority": 3, "urgent": True}


def test_structured_mode_data_base64_becomes_bytes() -> None:
    """data_base64 is decoded into bytes data."""
    body = json.dumps({**STRUCT, "data_base64": "AP8="}).encode()
    event = parse_http_event({"content-type": "application/cloudevents+json"}, body)
    assert event["data"] == b"\x00\xff" and "data_base64" not in event


def test_batch_mode() -> None:
    """A batch is a JSON array of structured events; parse_http_event refuses it."""
    headers = {"content-type": "application/cloudevents-batch+json"}
    body = json.dumps([STRUCT, {**STRUCT, "id": "e-2"}]).encode()
    assert [e["id"] for e in parse_http_events(headers, body)] == ["e-1", "e-2"]
    with pytest.raises(InvalidEvent, match="batch"):
        parse_http_event(headers, body)


@pytest.mark.parametrize("missing", ["specversion", "id", "source", "type"])
def test_missing_required_attribute_is_named(missing: str) -> None:
    """Each required attribute, missing in binary or structured mode, is named in a 400."""
    binary = {k: v for k, v in BINARY.items() if k != f"ce-{missing}"}
    if missing == "specversion":
        binary["content-type"] = "application/cloudevents+json"  # no ce-specversion: structured
        body = json.dumps({k: v for k, v in STRUCT.items() if k != missing}).encode()
        cases = [(binary, body)]
    else:
        cases = [(binary, b"{}")]
    cases.append(({"content-type": "application/cloudevents+json"},
                  json.dumps({k: v for k, v in STRUCT.items() if k != missing}).encode()))
    for headers, body in cases:
        with pytest.raises(InvalidEvent) as info:
            parse_http_event(headers, body)
        err = info.value
        assert (err.code, err.status, err.details["attribute"]) == ("invalid_event", 400, missing)
        assert repr(missing) in err.message


@pytest.mark.parametrize("change, attribute", [
    ({"specversion": "0.3"}, "specversion"),
    ({"id": ""}, "id"),
    ({"source": 7}, "source"),
    ({"time": "yesterday"}, "time"),
    ({"time": "2026-01-02T03:04:05"}, "time"),
    ({"subject": ""}, "subject"),
    ({"my_ext": "x"}, "my_ext"),
    ({"ratio": 0.5}, "ratio"),
    ({"big": 2**40}, "big"),
    ({"nested": {"a": 1}}, "nested"),
], ids=lambda v: str(v) if isinstance(v, str) else None)
def test_invalid_attributes_are_named(change: dict, attribute: str) -> None:
    """Wrong versions, empty ids, bad times, bad names and non-scalar extensions are 400s."""
    body = json.dumps({**STRUCT, **change}).encode()
    with pytest.raises(InvalidEvent) as info:
        parse_http_event({"content-type": "application/cloudevents+json"}, body)
    assert info.value.details["attribute"] == attribute


@pytest.mark.parametrize("headers, body, fragment", [
    ({"content-type": "application/json"}, b"{}", "not a CloudEvent"),
    ({"content-type": "application/cloudevents+json"}, b"{nope", "not valid JSON"),
    ({"content-type": "application/cloudevents+json"}, b"[1]", "JSON object"),
    ({"content-type": "application/cloudevents-batch+json"}, b"{}", "array"),
    ({"content-type": "application/cloudevents+json"},
     json.dumps({**STRUCT, "data": 1, "data_base64": "AA=="}).encode(), "both"),
    ({"content-type": "application/cloudevents+json"},
     json.dumps({**STRUCT, "data_base64": "***"}).encode(), "base64"),
    (BINARY, b"{nope", "not valid JSON"),
    ({**BINARY, "content-type": "text/plain"}, b"\xff", "UTF-8"),
], ids=["plain JSON", "bad JSON", "not an object", "batch not an array", "data twice",
        "bad base64", "bad binary JSON", "bad text"])
def test_malformed_requests_are_400(headers: dict, body: bytes, fragment: str) -> None:
    """Bodies that are not CloudEvents fail with invalid_event and say why."""
    with pytest.raises(InvalidEvent, match=fragment):
        parse_http_events(headers, body)


def test_validate_event_checks_a_dict() -> None:
    """validate_event applies the same rules to an event given as a dict, and copies it."""
    event = {**STRUCT, "data": {"x": 1}}
    assert validate_event(event) == event and validate_event(event) is not event
    with pytest.raises(InvalidEvent):
        validate_event({"id": "x"})


@pytest.mark.parametrize("data, content_type", [
    ({"total": 12}, None), (b"\x00\xff", "application/octet-stream"), ("hi", "text/plain"),
    (None, None), ([1, "two"], "application/json"),
], ids=["json", "bytes", "text", "no data", "json list"])
def test_round_trip_through_both_http_modes(data: object, content_type: str | None) -> None:
    """to_structured and to_binary produce requests that parse back to the same event."""
    event = {**STRUCT, "subject": 'a "quoted" café 100%', "urgent": True}
    if content_type:
        event["datacontenttype"] = content_type
    if data is not None:
        event["data"] = data
    assert parse_http_event(*to_structured(event)) == event
    back = parse_http_event(*to_binary(event))
    expected = {**event, "urgent": "true"}  # binary mode carries every attribute as text
    if isinstance(data, dict):
        expected["datacontenttype"] = "application/json"
    assert back == expected


# -- AWS shapes ----------------------------------------------------------------------
def test_to_eventbridge_envelope() -> None:
    """A CloudEvent becomes the EventBridge envelope Powertools' model accepts."""
    event = {**STRUCT, "time": "2026-01-02T04:04:05+01:00", "data": {"total": 12}}
    envelope = to_eventbridge(event, account="123456789012", region="eu-west-1",
                              resources=["arn:x"])
    assert envelope == {"version": "0", "id": "e-1", "detail-type": "order.placed",
                        "source": "/shop", "account": "123456789012",
                        "time": "2026-01-02T03:04:05Z", "region": "eu-west-1",
                        "resources": ["arn:x"], "detail": {"total": 12}}
    model = EventBridgeModel.model_validate(envelope)
    assert model.detail_type == "order.placed"


@pytest.mark.parametrize("data, detail", [
    (None, {}), ([1, 2], {"data": [1, 2]}), (b"\x01", {"data_base64": "AQ=="}),
], ids=["no data", "a list", "bytes"])
def test_to_eventbridge_detail_is_always_an_object(data: object, detail: dict) -> None:
    """detail is {} without data, and wraps data that is not an object."""
    event = dict(STRUCT) if data is None else {**STRUCT, "data": data}
    now = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    envelope = to_eventbridge(event, now=now)
    assert envelope["detail"] == detail
    assert envelope["time"] == "2026-05-06T07:08:09Z"


def delivery(**changes: object) -> Delivery:
    fields = dict(queue="orders", message_id="m-1", body=b'{"n": 1}',
                  attributes={"traceparent": TRACEPARENT}, receipt="7.abc", receive_count=2,
                  sent_at=1_700_000_000.25, first_received_at=1_700_000_001.5)
    fields.update(changes)
    return Delivery(**fields)  # type: ignore[arg-type]


def test_to_sqs_records_matches_lambdas_sqs_event() -> None:
    """Deliveries become an SQS event Powertools' model accepts, with counts, times and trace."""
    arn = queue_arn("orders", region="eu-west-1", account="123456789012")
    event = to_sqs_records([delivery(), delivery(message_id="m-2", attributes={})], arn)
    SqsModel.model_validate(event)
    first, second = event["Records"]
    assert first["messageId"] == "m-1" and first["receiptHandle"] == "7.abc"
    assert first["body"] == '{"n": 1}'
    assert first["attributes"] == {
        "ApproximateReceiveCount": "2", "SentTimestamp": "1700000000250", "SenderId": "skiff",
        "ApproximateFirstReceiveTimestamp": "1700000001500",
        "AWSTraceHeader": "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;"
                          "Sampled=1"}
    assert first["messageAttributes"]["traceparent"] == {
        "stringValue": TRACEPARENT, "stringListValues": [], "binaryListValues": [],
        "dataType": "String"}
    assert first["md5OfBody"] == hashlib.md5(b'{"n": 1}').hexdigest()
    assert (first["eventSource"], first["eventSourceARN"], first["awsRegion"]) == (
        "aws:sqs", "arn:aws:sqs:eu-west-1:123456789012:orders", "eu-west-1")
    assert "md5OfMessageAttributes" in first and "md5OfMessageAttributes" not in second
    assert "AWSTraceHeader" not in second["attributes"]


def test_sqs_md5_of_message_attributes_is_sqss_digest() -> None:
    """The attribute digest equals the value SQS documents for a known attribute."""
    from skiff.bus.events import md5_of_message_attributes

    assert md5_of_message_attributes({"attribName1": "attribValue 1"}) == \
        "19e27d4e946b072f3f58da80d94fd778"


def test_sqs_record_of_a_binary_body_is_base64_and_flagged() -> None:
    """A text body is sent as is with its MD5; one that is not UTF-8 arrives base64-encoded with skiff-body-encoding: base64."""
    [text] = to_sqs_records([delivery(body=b"test", attributes={})], "q")["Records"]
    assert text["md5OfBody"] == "098f6bcd4621d373cade4e832627b4f6"  # AWS's sample event
    [record] = to_sqs_records([delivery(body=b"\xff\x00", attributes={})], "q")["Records"]
    assert record["body"] == "/wA="
    assert record["messageAttributes"]["skiff-body-encoding"]["stringValue"] == "base64"
    assert record["awsRegion"] == "local"


IDS = ["a", "b", "c"]


@pytest.mark.parametrize("result, failed", [
    (None, None),
    ({}, None),
    ({"batchItemFailures": None}, None),
    ({"batchItemFailures": []}, None),
    ({"statusCode": 200}, None),
    ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
    ({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "c"}]}, {"a", "c"}),
    ('{"batchItemFailures": [{"itemIdentifier": "c"}]}', {"c"}),
    (b"", None),
    ({"batchItemFailures": [{"itemIdentifier": ""}]}, set(IDS)),
    ({"batchItemFailures": [{"itemIdentifier": None}]}, set(IDS)),
    ({"batchItemFailures": [{"itemId": "a"}]}, set(IDS)),
    ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, set(IDS)),
    ({"batchItemFailures": "a"}, set(IDS)),
    ({"batchItemFailures": ["a"]}, set(IDS)),
    ("not json", set(IDS)),
    (["a"], set(IDS)),
], ids=["None", "empty response", "null list", "empty list", "other keys", "one failure",
        "two failures", "JSON text", "empty text", "empty identifier", "null identifier",
        "wrong key", "unknown id", "list is a string", "entry is a string", "invalid JSON",
        "not an object"])
def test_partial_batch_response_rules(result: object, failed: set[str] | None) -> None:
    """Lambda's partial-batch rules: empty means success, malformed fails the whole batch."""
    assert parse_batch_response(result, IDS) == failed


# -- trace context -------------------------------------------------------------------
@pytest.mark.parametrize("value, valid", [
    (TRACEPARENT, True),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", True),
    ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", True),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", False),
    ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),
    ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),
    ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", False),
    ("garbage", False),
    (None, False),
], ids=["sampled", "not sampled", "future version", "v00 with extra", "version ff",
        "zero trace", "zero span", "upper case", "garbage", "absent"])
def test_traceparent_parsing_follows_w3c(value: str | None, valid: bool) -> None:
    """Valid traceparent values parse; invalid ones are ignored (None), as W3C requires."""
    assert (parse_traceparent(value) is not None) is valid


def test_trace_context_travels_through_message_attributes() -> None:
    """inject/extract carry the context; child keeps the trace and changes the span."""
    ctx = parse_traceparent(TRACEPARENT)
    assert ctx == TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True)
    attrs = inject({"k": "v"}, ctx.child(), tracestate="vendor=1")
    assert attrs["k"] == "v" and attrs["tracestate"] == "vendor=1"
    hop = extract(attrs)
    assert hop.trace_id == ctx.trace_id and hop.span_id != ctx.span_id
    assert extract(None) is None
    fresh = new_trace(sampled=False)
    assert parse_traceparent(fresh.traceparent) == fresh and fresh.traceparent.endswith("-00")
