"""CloudEvents 1.0 in and out, and the AWS shapes handlers receive.

Events enter over HTTP in CloudEvents' binary mode (``ce-*`` headers, the body
is the data), structured mode (``application/cloudevents+json``) or batch mode
(``application/cloudevents-batch+json``). Inside Skiff an event is a plain dict
of its attributes plus ``data`` (a JSON value, ``str``, or ``bytes``), so it
crosses IPC and storage without a class. Bad input raises
:class:`~skiff.bus.errors.InvalidEvent` (400) naming the attribute.

We parse by hand rather than through the ``cloudevents`` SDK: the SDK fills in
a missing ``id``/``specversion``/``time``, which would hide exactly the errors a
sender must be told about, and it returns its own classes.

Going out, apps written for Lambda get what Lambda gives them:
:func:`to_eventbridge` (the EventBridge envelope for rule targets) and
:func:`to_sqs_records` (an SQS batch); :func:`parse_batch_response` reads a
partial-batch response back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from skiff.bus.broker import Delivery
from skiff.bus.errors import InvalidEvent
from skiff.bus.tracecontext import extract

CloudEvent = dict[str, Any]
Headers = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
REQUIRED = ("specversion", "id", "source", "type")
_OPTIONAL_STRINGS = ("datacontenttype", "dataschema", "subject")
_NAME = re.compile(r"[a-z0-9]+")
# HTTP binding 3.1.3.2: header values percent-encode space, '"', '%' and
# everything outside printable ASCII.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ' "%')
_INT32 = range(-(2**31), 2**31)

DEFAULT_ACCOUNT = "000000000000"
DEFAULT_REGION = "local"


# -- HTTP in -----------------------------------------------------------------------
def parse_http_event(headers: Headers, body: bytes) -> CloudEvent:
    """One CloudEvent from an HTTP request in binary or structured mode."""
    if _media_type(_normalize(headers).get("content-type", "")) == BATCH:
        raise InvalidEvent("expected one CloudEvent, got a batch; send structured or binary "
                           "mode, or use the batch endpoint", attribute="content-type")
    return parse_http_events(headers, body)[0]


def parse_http_events(headers: Headers, body: bytes) -> list[CloudEvent]:
    """The CloudEvents of an HTTP request in any mode (batch gives several)."""
    h = _normalize(headers)
    media = _media_type(h.get("content-type", ""))
    if media == STRUCTURED:
        return [_from_json(_json_body(body), "")]
    if media == BATCH:
        items = _json_body(body, want=list)
        return [_from_json(item, f"[{i}]") for i, item in enumerate(items)]
    if "ce-specversion" in h:
        return [_from_binary(h, body)]
    raise InvalidEvent("not a CloudEvent: send a ce-specversion header (binary mode) or "
                       f"content-type {STRUCTURED} (structured mode)", attribute="specversion")


def validate_event(event: Mapping[str, Any]) -> CloudEvent:
    """Check a CloudEvent given as a dict (e.g. by ``skiff.sdk`` publish); return a copy."""
    if not isinstance(event, Mapping):
        raise InvalidEvent(f"a CloudEvent is an object, got {type(event).__name__}",
                           attribute="specversion")
    out = dict(event)
    _validate(out, "", binary=False)
    return out


def _from_binary(h: dict[str, str], body: bytes) -> CloudEvent:
    event: CloudEvent = {}
    for name, value in h.items():
        if name.startswith("ce-"):
            event[name[3:]] = unquote(value)
    if "content-type" in h:
        event["datacontenttype"] = h["content-type"]
    _validate(event, "", binary=True)
    if body:
        event["data"] = _decode_data(body, event.get("datacontenttype"))
    return event


def _from_json(obj: Any, where: str) -> CloudEvent:
    if not isinstance(obj, dict):
        raise InvalidEvent(f"a structured CloudEvent{where} is a JSON object",
                           attribute="specversion")
    event = dict(obj)
    if "data_base64" in event:
        if "data" in event:
            raise InvalidEvent(f"event{where} has both data and data_base64",
                               attribute="data_base64")
        try:
            event["data"] = base64.b64decode(event.pop("data_base64"), validate=True)
        except (ValueError, TypeError):
            raise InvalidEvent(f"event{where}: data_base64 is not valid base64",
                               attribute="data_base64") from None
    _validate(event, where, binary=False)
    return event


def _validate(event: CloudEvent, where: str, *, binary: bool) -> None:
    for name in REQUIRED:
        value = event.get(name)
        if value is None:
            raise InvalidEvent(f"event{where} is missing required attribute {name!r}"
                               + (f" (header ce-{name})" if binary else ""), attribute=name)
        if not isinstance(value, str) or not value:
            raise InvalidEvent(f"event{where}: attribute {name!r} must be a non-empty string",
                               attribute=name)
    if event["specversion"] != "1.0":
        raise InvalidEvent(f"event{where}: unsupported specversion {event['specversion']!r}; "
                           "Skiff speaks CloudEvents 1.0", attribute="specversion")
    for name in _OPTIONAL_STRINGS:
        if name in event and (not isinstance(event[name], str) or not event[name]):
            raise InvalidEvent(f"event{where}: attribute {name!r} must be a non-empty string",
                               attribute=name)
    if "time" in event:
        _check_time(event["time"], where)
    for name, value in event.items():
        if name == "data":
            continue
        if not _NAME.fullmatch(name):
            raise InvalidEvent(f"event{where}: attribute name {name!r} must be lower-case "
                               "letters and digits", attribute=name)
        if isinstance(value, bool | str) or (
                isinstance(value, int) and value in _INT32):
            continue
        raise InvalidEvent(f"event{where}: attribute {name!r} must be a string, boolean or "
                           "32-bit integer", attribute=name)


def _check_time(value: Any, where: str) -> None:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidEvent(f"event{where}: time {value!r} is not an RFC 3339 timestamp",
                           attribute="time")


def _decode_data(body: bytes, content_type: str | None) -> Any:
    media = _media_type(content_type or "")
    if _is_json(media):
        try:
            return json.loads(body)
        except ValueError:
            raise InvalidEvent(f"the body is not valid JSON ({media})", attribute="data") \
                from None
    if media.startswith("text/"):
        try:
            return body.decode()
        except UnicodeDecodeError:
            raise InvalidEvent("the text body is not UTF-8", attribute="data") from None
    return bytes(body)


def _json_body(body: bytes, want: type = dict) -> Any:
    try:
        value = json.loads(body)
    except ValueError:
        raise InvalidEvent("the body is not valid JSON", attribute="specversion") from None
    if not isinstance(value, want):
        kind = "an array of events" if want is list else "a JSON object"
        raise InvalidEvent(f"the body must be {kind}", attribute="specversion")
    return value


def _normalize(headers: Headers) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for name, value in items:
        n = name.decode("latin-1") if isinstance(name, bytes) else name
        v = value.decode("latin-1") if isinstance(value, bytes) else value
        out.setdefault(n.lower(), v)
    return out


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(media: str) -> bool:
    return media in ("application/json", "text/json") or media.endswith("+json")


# -- HTTP out ----------------------------------------------------------------------
def to_structured(event: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    """Headers and body of ``event`` in structured mode (bytes data as data_base64)."""
    doc = {k: v for k, v in event.items() if k != "data"}
    if "data" in event:
        data = event["data"]
        if isinstance(data, bytes | bytearray):
            doc["data_base64"] = base64.b64encode(data).decode()
        else:
            doc["data"] = data
    return ({"content-type": f"{STRUCTURED}; charset=utf-8"},
            json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())


def to_binary(event: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    """Headers and body of ``event`` in binary mode."""
    headers = {f"ce-{k}": quote(_header_text(v), safe=_HEADER_SAFE)
               for k, v in event.items() if k not in ("data", "datacontenttype")}
    data = event.get("data")
    content_type = event.get("datacontenttype")
    if data is None:
        body = b""
    elif isinstance(data, bytes | bytearray):
        body = bytes(data)
    elif isinstance(data, str) and not _is_json(_media_type(content_type or "text/plain")):
        body = data.encode()
    else:
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        content_type = content_type or "application/json"
    if content_type:
        headers["content-type"] = content_type
    return headers, body


def _header_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


# -- AWS shapes --------------------------------------------------------------------
def to_eventbridge(event: Mapping[str, Any], *, account: str = DEFAULT_ACCOUNT,
                   region: str = DEFAULT_REGION, resources: Sequence[str] = (),
                   now: datetime | None = None) -> dict[str, Any]:
    """The EventBridge envelope a Lambda rule target receives for ``event``.

    ``detail`` must be an object: a dict ``data`` is used as is, no data gives
    ``{}``, any other JSON value is wrapped as ``{"data": value}`` and bytes as
    ``{"data_base64": "..."}``.
    """
    return {
        "version": "0",
        "id": event["id"],
        "detail-type": event["type"],
        "source": event["source"],
        "account": account,
        "time": _eventbridge_time(event.get("time"), now),
        "region": region,
        "resources": list(resources),
        "detail": _detail(event.get("data")),
    }


def _eventbridge_time(value: str | None, now: datetime | None) -> str:
    t = datetime.fromisoformat(value) if value else (now or datetime.now(UTC))
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _detail(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if isinstance(data, dict):
        return data
    if isinstance(data, bytes | bytearray):
        return {"data_base64": base64.b64encode(data).decode()}
    return {"data": data}


def queue_arn(queue: str, *, region: str = DEFAULT_REGION,
              account: str = DEFAULT_ACCOUNT) -> str:
    return f"arn:aws:sqs:{region}:{account}:{queue}"


def to_sqs_records(deliveries: Iterable[Delivery], queue_arn: str, *,
                   region: str | None = None, sender_id: str = "skiff") -> dict[str, Any]:
    """An SQS event (``{"Records": [...]}``) as Lambda delivers it, for ``deliveries``.

    Message attributes become ``messageAttributes`` of type String; a
    ``traceparent`` is also given as X-Ray's ``AWSTraceHeader``. A body that is
    not UTF-8 (SQS bodies are text) arrives base64-encoded, flagged by the
    message attribute ``skiff-body-encoding: base64``.
    """
    parts = queue_arn.split(":")
    aws_region = region or (parts[3] if len(parts) >= 6 and parts[3] else DEFAULT_REGION)
    return {"Records": [_sqs_record(d, queue_arn, aws_region, sender_id) for d in deliveries]}


def _sqs_record(d: Delivery, arn: str, region: str, sender_id: str) -> dict[str, Any]:
    attributes = dict(d.attributes)
    try:
        body = d.body.decode()
    except UnicodeDecodeError:
        body = base64.b64encode(d.body).decode()
        attributes["skiff-body-encoding"] = "base64"
    system = {
        "ApproximateReceiveCount": str(d.receive_count),
        "SentTimestamp": str(int(d.sent_at * 1000)),
        "SenderId": sender_id,
        "ApproximateFirstReceiveTimestamp": str(int(d.first_received_at * 1000)),
    }
    if (trace := extract(d.attributes)) is not None:
        system["AWSTraceHeader"] = trace.xray_header()
    record: dict[str, Any] = {
        "messageId": d.message_id,
        "receiptHandle": d.receipt,
        "body": body,
        "attributes": system,
        "messageAttributes": {
            name: {"stringValue": value, "stringListValues": [], "binaryListValues": [],
                   "dataType": "String"}
            for name, value in attributes.items()},
        "md5OfBody": _md5(body.encode()),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": region,
    }
    if attributes:
        record["md5OfMessageAttributes"] = md5_of_message_attributes(attributes)
    return record


def md5_of_message_attributes(attributes: Mapping[str, str]) -> str:
    """SQS's digest of String message attributes: per attribute, sorted by name,
    the length-prefixed (4 bytes, big-endian) name and data type, the transport
    byte 1, then the length-prefixed value."""
    buf = bytearray()
    for name in sorted(attributes):
        for part in (name, "String"):
            encoded = part.encode()
            buf += len(encoded).to_bytes(4, "big") + encoded
        value = attributes[name].encode()
        buf += b"\x01" + len(value).to_bytes(4, "big") + value
    return _md5(bytes(buf))


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def parse_batch_response(result: Any, message_ids: Iterable[str]) -> set[str] | None:
    """The failed message ids of a partial-batch response; None if all succeeded.

    Lambda's rules (``ReportBatchItemFailures``; call this only for triggers
    that opted in): no result, no or an empty ``batchItemFailures`` means
    success; a malformed response, or an ``itemIdentifier`` that is empty,
    missing or not in the batch, fails the *whole* batch (all ``message_ids``
    are returned). A JSON text (str/bytes) is decoded first.
    """
    everything = set(message_ids)
    if isinstance(result, str | bytes | bytearray):
        try:
            result = json.loads(result) if result.strip() else None
        except ValueError:
            return everything
    if result is None:
        return None
    if not isinstance(result, dict):
        return everything
    failures = result.get("batchItemFailures")
    if failures is None or failures == []:
        return None
    if not isinstance(failures, list):
        return everything
    failed: set[str] = set()
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(ident, str) or not ident or ident not in everything:
            return everything
        failed.add(ident)
    return failed
