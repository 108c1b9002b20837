"""`skiff event generate KIND` against the key structure of AWS's published samples,
and `skiff invoke` building the event an app's kind expects: a Lambda handler gets
an API Gateway event (never None), an HTTP app a request; --event FILE, --local DIR."""

from __future__ import annotations

import json

import pytest

from skiff.cli import events
from tests.cliproc import run_inprocess

# the keys of each AWS sample (sam local generate-event / the Lambda developer guide)
SHAPES = {
    "apigw-http": ({"version", "routeKey", "rawPath", "rawQueryString", "headers",
                    "requestContext", "isBase64Encoded"}, None),
    "apigw-rest": ({"resource", "path", "httpMethod", "headers", "multiValueHeaders",
                    "queryStringParameters", "multiValueQueryStringParameters",
                    "pathParameters", "stageVariables", "requestContext", "body",
                    "isBase64Encoded"}, None),
    "sqs": ({"Records"}, {"messageId", "receiptHandle", "body", "attributes",
                          "messageAttributes", "md5OfBody", "eventSource", "eventSourceARN",
                          "awsRegion"}),
    "eventbridge": ({"version", "id", "detail-type", "source", "account", "time", "region",
                     "resources", "detail"}, None),
    "schedule": ({"version", "id", "detail-type", "source", "account", "time", "region",
                  "resources", "detail"}, None),
    "cloudevent": ({"specversion", "id", "source", "type", "time"}, None),
    "s3": ({"Records"}, {"eventVersion", "eventSource", "awsRegion", "eventTime", "eventName",
                         "userIdentity", "requestParameters", "responseElements", "s3"}),
    "sns": ({"Records"}, {"EventVersion", "EventSubscriptionArn", "EventSource", "Sns"}),
    "dynamodb-stream": ({"Records"}, {"eventID", "eventName", "eventVersion", "eventSource",
                                      "awsRegion", "dynamodb", "eventSourceARN"}),
}


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_generated_events_have_the_samples_keys(kind):
    top, record = SHAPES[kind]
    event = events.KINDS[kind]()
    assert set(event) >= top, set(top) - set(event)
    if record:
        assert set(event["Records"][0]) == record


def test_options_fill_the_common_fields():
    e = events.apigw_http(method="post", path="/orders", query="a=1",
                          headers=[("X-Api-Key", "k")], body='{"n": 1}')
    assert (e["requestContext"]["http"]["method"], e["rawPath"], e["queryStringParameters"],
            e["headers"]["x-api-key"], json.loads(e["body"])) == ("POST", "/orders", {"a": "1"},
                                                                   "k", {"n": 1})
    [rec] = events.sqs(queue="orders", data={"id": 7}, region="eu-west-1")["Records"]
    assert rec["eventSourceARN"] == "arn:aws:sqs:eu-west-1:123456789012:orders"
    assert json.loads(rec["body"]) == {"id": 7}
    assert events.s3(bucket="pics", key="a/b.png")["Records"][0]["s3"]["object"]["key"] == "a/b.png"
    ddb = events.dynamodb_stream(keys={"pk": "u1"}, data={"n": 2})["Records"][0]["dynamodb"]
    assert ddb["NewImage"] == {"pk": {"S": "u1"}, "n": {"N": "2"}}
    eb = events.eventbridge(source="shop", detail_type="Paid", data={"x": 1})
    assert (eb["source"], eb["detail-type"], eb["detail"]) == ("shop", "Paid", {"x": 1})


def test_generate_prints_json_and_refuses_unknown_kinds(monkeypatch, capsys):
    status, _, _ = run_inprocess(monkeypatch, "event", "generate", "sns", "--data", "hi",
                                 "--name", "alerts")
    printed = json.loads(capsys.readouterr().out)
    assert status == 0 and printed["Records"][0]["Sns"]["Message"] == "hi"
    assert printed["Records"][0]["Sns"]["TopicArn"].endswith(":alerts")
    status, _, err = run_inprocess(monkeypatch, "event", "generate", "kinesis")
    assert status == 1 and "[bad_event_kind]" in err and "apigw-http" in err


def test_invoke_lambda_app_gets_an_http_event_not_none(server, monkeypatch, admin_env,
                                                        tmp_path):
    status, out, err = run_inprocess(monkeypatch, "invoke", "hello", "--path", "/hi?name=ada",
                                     env=admin_env)
    assert status == 0, err
    result = json.loads(out)
    assert result["greeting"] == "hello, ada" and result["path"] == "/hi"
    # a raw event from a file, as `skiff event generate` writes it
    (tmp_path / "ev.json").write_text(json.dumps(events.eventbridge(data={"k": 1})))
    status, out, err = run_inprocess(monkeypatch, "invoke", "hello", "--event",
                                     str(tmp_path / "ev.json"), env=admin_env)
    assert status == 0, err
    assert json.loads(out)["event"]["detail"] == {"k": 1}


def test_invoke_local_runs_a_scaffolded_app_without_a_server(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for template in ("lambda-api", "asgi"):
        status, _, err = run_inprocess(monkeypatch, "new", f"my-{template}", "-t", template,
                                       )
        assert status == 0, err
        status, out, err = run_inprocess(monkeypatch, "invoke", "x", "--local",
                                         f"my-{template}", "--path", "/")
        assert status == 0, err
        assert out.startswith("HTTP 200"), out
