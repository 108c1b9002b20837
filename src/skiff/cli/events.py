"""Sample events, shaped as AWS's published samples are (the ones `sam local
generate-event` prints and the Lambda developer guide shows), for `skiff invoke
--event` and for an app's own tests.

The two API Gateway shapes and the SQS and EventBridge envelopes are built by the
same code that builds them for a running app (skiff.runtime, skiff.bus), so a
generated event is what the app receives when deployed. Account and region default
to the samples' 123456789012 and us-east-1; ``--account`` and ``--region`` change
them."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from skiff.errors import SkiffError

ACCOUNT, REGION = "123456789012", "us-east-1"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _body_text(data: Any) -> str:
    return data if isinstance(data, str) else json.dumps(data)


def http_request(*, method: str = "GET", path: str = "/", query: str = "",
                 headers: list[tuple[str, str]] | None = None, body: str = "",
                 host: str = "localhost"):  # noqa: ANN201 - an ipc.HttpRequest
    from skiff.ipc import HttpRequest

    hs = [(k.lower(), v) for k, v in (headers or [])]
    names = {k for k, _ in hs}
    if "host" not in names:
        hs.insert(0, ("host", host))
    if body and "content-type" not in names:
        hs.append(("content-type", "application/json" if _is_json(body) else "text/plain"))
    if "user-agent" not in names:
        hs.append(("user-agent", "skiff-cli"))
    return HttpRequest(id=str(uuid.uuid4()), method=method.upper(), path=path or "/",
                       query=query, headers=hs, body=body.encode(), host=host,
                       client="127.0.0.1")


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def apigw_http(*, app: str = "", **request: Any) -> dict:
    from skiff.runtime.lambda_http import build_http_event

    return build_http_event(http_request(**request), app)


def apigw_rest(*, app: str = "", **request: Any) -> dict:
    from skiff.runtime.lambda_rest import build_rest_event

    return build_rest_event(http_request(**request), app)


def sqs(*, queue: str = "my-queue", data: Any = "Hello from SQS!", count: int = 1,
        account: str = ACCOUNT, region: str = REGION) -> dict:
    from skiff.bus import Delivery, queue_arn
    from skiff.bus.events import to_sqs_records

    now = time.time()
    body = _body_text(data).encode()
    deliveries = [Delivery(queue, str(uuid.uuid4()), body, {}, uuid.uuid4().hex, 1, now, now)
                  for _ in range(count)]
    return to_sqs_records(deliveries, queue_arn(queue, region=region, account=account),
                          region=region, sender_id=account)


def eventbridge(*, source: str = "com.example.orders", detail_type: str = "OrderCreated",
                data: Any = None, account: str = ACCOUNT, region: str = REGION) -> dict:
    from skiff.bus import to_eventbridge

    return to_eventbridge({"id": str(uuid.uuid4()), "type": detail_type, "source": source,
                           "data": {} if data is None else data},
                          account=account, region=region, now=_now())


def schedule(*, rule: str = "my-schedule", account: str = ACCOUNT, region: str = REGION) -> dict:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": account, "time": _iso(_now()),
            "region": region, "resources": [f"arn:aws:events:{region}:{account}:rule/{rule}"],
            "detail": {}}


def cloudevent(*, source: str = "/skiff/cli", type_: str = "com.example.sampled",
               data: Any = None) -> dict:
    event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": source, "type": type_,
             "time": _now().isoformat().replace("+00:00", "Z")}
    if data is not None:
        event |= {"datacontenttype": "application/json", "data": data}
    return event


def s3(*, bucket: str = "example-bucket", key: str = "test/key", size: int = 1024,
       event_name: str = "ObjectCreated:Put", account: str = ACCOUNT,
       region: str = REGION) -> dict:
    etag = hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": region,
        "eventTime": _now().strftime("%Y-%m-%dT%H:%M:%S.000Z"), "eventName": event_name,
        "userIdentity": {"principalId": "EXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper(),
                             "x-amz-id-2": uuid.uuid4().hex},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "testConfigRule",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "EXAMPLE"},
                          "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": key, "size": size, "eTag": etag,
                          "sequencer": f"{int(time.time() * 1000):016X}"}}}]}


def sns(*, topic: str = "sns-lambda", data: Any = "Hello from SNS!", subject: str = "TestInvoke",
        account: str = ACCOUNT, region: str = REGION) -> dict:
    arn = f"arn:aws:sns:{region}:{account}:{topic}"
    return {"Records": [{
        "EventVersion": "1.0", "EventSource": "aws:sns",
        "EventSubscriptionArn": f"{arn}:{uuid.uuid4()}",
        "Sns": {"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": arn,
                "Subject": subject, "Message": _body_text(data),
                "Timestamp": _now().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "SignatureVersion": "1", "Signature": "EXAMPLE",
                "SigningCertUrl": "EXAMPLE", "UnsubscribeUrl": "EXAMPLE",
                "MessageAttributes": {}}}]}


def _attribute(value: Any) -> dict:
    """A JSON value as a DynamoDB attribute value (S, N, BOOL, NULL, M, L)."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    if value is None:
        return {"NULL": True}
    if isinstance(value, dict):
        return {"M": {k: _attribute(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"L": [_attribute(v) for v in value]}
    return {"S": str(value)}


def dynamodb_stream(*, table: str = "ExampleTableWithStream", keys: Any = None,
                    data: Any = None, event_name: str = "INSERT", account: str = ACCOUNT,
                    region: str = REGION) -> dict:
    keys = keys if isinstance(keys, dict) else {"Id": 101}
    image = {**keys, **(data if isinstance(data, dict) else {"Message": "New item!"})}
    record: dict = {"ApproximateCreationDateTime": int(time.time()),
                    "Keys": {k: _attribute(v) for k, v in keys.items()}}
    if event_name != "REMOVE":
        record["NewImage"] = {k: _attribute(v) for k, v in image.items()}
    record |= {"SequenceNumber": str(int(time.time() * 1000)), "SizeBytes": 26,
               "StreamViewType": "NEW_AND_OLD_IMAGES"}
    return {"Records": [{
        "eventID": uuid.uuid4().hex, "eventName": event_name, "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": region, "dynamodb": record,
        "eventSourceARN": f"arn:aws:dynamodb:{region}:{account}:table/{table}/stream/"
                          f"{_now().strftime('%Y-%m-%dT%H:%M:%S.000')}"}]}


KINDS: dict[str, Callable[..., dict]] = {
    "apigw-http": apigw_http, "apigw-rest": apigw_rest, "sqs": sqs,
    "eventbridge": eventbridge, "schedule": schedule, "cloudevent": cloudevent, "s3": s3,
    "sns": sns, "dynamodb-stream": dynamodb_stream,
}


def parse_headers(values: list[str]) -> list[tuple[str, str]]:
    out = []
    for v in values:
        name, sep, value = v.partition(":")
        if not sep or not name.strip():
            raise SkiffError(f"--header {v!r} is not NAME:VALUE (e.g. 'x-api-key: abc')",
                             code="bad_usage", status=400)
        out.append((name.strip(), value.strip()))
    return out


def _data(text: str | None) -> Any:
    """--data: JSON when it parses, else the text itself (a message body)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


event_app = typer.Typer(help="Sample events shaped as AWS sends them.", no_args_is_help=True)


@event_app.command("generate")
def generate(
        kind: Annotated[str, typer.Argument(metavar="KIND", help=" | ".join(KINDS))],
        method: Annotated[str, typer.Option(help="apigw-*: the HTTP method")] = "GET",
        path: Annotated[str, typer.Option(help="apigw-*: the request path")] = "/",
        query: Annotated[str, typer.Option(help="apigw-*: the query string, a=1&b=2")] = "",
        header: Annotated[list[str] | None, typer.Option(
            help="apigw-*: NAME:VALUE (repeat)")] = None,
        data: Annotated[str | None, typer.Option(
            "--data", "--body", "-d", help="the body, message, detail or item (JSON or text)")] = None,
        source: Annotated[str | None, typer.Option(help="eventbridge, cloudevent: the source")] = None,
        type_: Annotated[str | None, typer.Option(
            "--type", help="eventbridge: detail-type; cloudevent: type")] = None,
        name: Annotated[str | None, typer.Option(
            help="sqs: queue; sns: topic; s3: bucket; dynamodb-stream: table; schedule: rule")] = None,
        key: Annotated[str | None, typer.Option(help="s3: object key; dynamodb-stream: keys as JSON")] = None,
        event_name: Annotated[str | None, typer.Option(
            help="s3: ObjectCreated:Put...; dynamodb-stream: INSERT | MODIFY | REMOVE")] = None,
        count: Annotated[int, typer.Option(min=1, max=10, help="sqs: records in the batch")] = 1,
        account: Annotated[str, typer.Option(help="the AWS account id in ARNs")] = ACCOUNT,
        region: Annotated[str, typer.Option(help="the AWS region")] = REGION) -> None:
    """Print a sample event as JSON (for `skiff invoke APP --event FILE`)."""
    if kind not in KINDS:
        raise SkiffError(f"no event kind {kind!r}; choose one of: {', '.join(KINDS)}",
                         code="bad_event_kind", status=400)
    d = _data(data)
    aws = {"account": account, "region": region}
    named = {k: v for k, v in {
        "sqs": {"queue": name, "data": d},
        "sns": {"topic": name, "data": d, **({"subject": type_} if type_ else {})},
        "s3": {"bucket": name, "key": key, "event_name": event_name},
        "dynamodb-stream": {"table": name, "keys": _data(key), "data": d,
                            "event_name": event_name},
        "schedule": {"rule": name},
        "eventbridge": {"source": source, "detail_type": type_, "data": d},
        "cloudevent": {"source": source, "type_": type_, "data": d},
    }.get(kind, {}).items() if v is not None}
    if kind.startswith("apigw-"):
        event = KINDS[kind](method=method, path=path, query=query,
                            headers=parse_headers(header or []),
                            body="" if data is None else data)
    elif kind == "cloudevent":
        event = cloudevent(**named)
    else:
        event = KINDS[kind](**named, **({"count": count} if kind == "sqs" else {}), **aws)
    print(json.dumps(event, indent=2))
