"""The data plane end to end: a real server on port 0, spoken to over HTTP."""

from __future__ import annotations

import concurrent.futures as cf
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_APPS


def test_lambda_handler_answers_on_path_and_host(test_apps_server):
    """A Lambda handler answers under /<app>/ and on <app>.localhost, seeing paths relative to its mount."""
    r = test_apps_server.http.get("/hello/greet/x?name=ada")
    assert r.status_code == 200
    body = r.json()
    assert body["greeting"] == "hello, ada"
    assert body["path"] == "/greet/x"
    assert body["request_id"] == r.headers["x-skiff-request-id"]
    r2 = test_apps_server.http.get("/greet/y", headers={"host": "hello.localhost"})
    assert r2.status_code == 200
    assert r2.json()["path"] == "/greet/y"


def test_unknown_app_is_a_json_404(test_apps_server):
    """An unknown app gets a JSON error with a stable code."""
    r = test_apps_server.http.get("/nope/x")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "app_not_found"
    assert r.json()["error"]["request_id"]


def _app_log(server, app: str, request_id: str) -> str:
    r = server.admin.get(f"/apps/{app}/logs", params={"limit": 5000})
    assert r.status_code == 200, r.text
    return "\n".join(line["line"] for line in r.json() if line["request_id"] == request_id)


def test_handler_exception_is_answered_as_api_gateway_does(test_apps_server):
    """A raising Lambda handler: 500 {"message": "Internal Server Error"} and the request
    id, nothing of the exception (its text may hold a password); the traceback is in
    the app's log under that request id; the next request is served normally."""
    r = test_apps_server.http.get("/faulty/raise")
    assert r.status_code == 500
    assert r.json() == {"message": "Internal Server Error"}
    rid = r.headers["x-skiff-request-id"]
    assert "boom" not in r.text and "Traceback" not in r.text
    log = test_apps_server.wait_for(
        lambda: (text := _app_log(test_apps_server, "faulty", rid)) and "ValueError: boom" in text
        and text, "the traceback in the log")
    assert "Traceback" in log and "handler.py" in log
    assert test_apps_server.http.get("/faulty/ok").status_code == 200


def test_non_serializable_result_is_a_502_and_the_log_names_the_type(test_apps_server):
    """A handler returning a set gets a 502 bad_result; the log names the type."""
    r = test_apps_server.http.get("/faulty/set")
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "bad_result"
    assert "set" not in r.json()["error"]["message"].replace("request id", "")
    rid = r.headers["x-skiff-request-id"]
    test_apps_server.wait_for(lambda: "'set'" in _app_log(test_apps_server, "faulty", rid),
                              "the bad result in the log")


def test_crash_gives_502_then_a_new_instance(test_apps_server):
    """A handler that exits the process: 502, and the next request gets a fresh instance."""
    before = test_apps_server.http.get("/faulty/ok").json()["pid"]
    r = test_apps_server.http.get("/faulty/exit")
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "instance_crashed"
    assert "exit code 3" in r.json()["error"]["message"]
    after = test_apps_server.http.get("/faulty/ok")
    assert after.status_code == 200
    assert after.json()["pid"] != before


def test_timeout_kills_the_instance_with_504(test_apps_server):
    """A handler over its timeout is killed: 504; the app keeps serving."""
    r = test_apps_server.http.get("/faulty/sleep")
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "timeout"
    assert test_apps_server.http.get("/faulty/ok").status_code == 200
    assert test_apps_server.http.get("/hello/").status_code == 200


def test_memory_limit_kills_the_instance_with_502(test_apps_server):
    """Allocating past memoryMB: the instance is killed and the body says the limit was hit."""
    r = test_apps_server.http.get("/faulty/hog")
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["code"] == "memory_limit"
    assert "64 MB" in err["message"]
    assert test_apps_server.http.get("/faulty/ok").status_code == 200


def test_body_over_limit_is_413(start_server, tmp_path):
    """A request body over the configured limit is refused with 413."""
    server = start_server(TEST_APPS / "hello", env={"SKIFF_MAX_BODY_BYTES": "1000"})
    r = server.http.post("/hello/", content=b"x" * 5000)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"
    assert server.http.post("/hello/", content=b"x" * 500).status_code == 200


def test_max_instances_queue_then_429(test_apps_server, tmp_path):
    """Beyond maxInstances requests wait in the bounded queue; past it they get 429 + Retry-After."""
    gate = tmp_path / "open"
    url = f"/gate/?gate={gate}"
    with cf.ThreadPoolExecutor(4) as pool:
        first = pool.submit(test_apps_server.http.get, url)
        test_apps_server.wait_for(lambda: test_apps_server.app("gate")["instances"] == 1
                                  and test_apps_server.app("gate")["waiting"] == 0
                                  and not first.done(), "the first request to hold the instance")
        second = pool.submit(test_apps_server.http.get, url)
        test_apps_server.wait_for(lambda: test_apps_server.app("gate")["waiting"] == 1,
                                  "the second request to queue")
        third = test_apps_server.http.get(url)
        assert third.status_code == 429
        assert third.headers["retry-after"] == "1"
        assert third.json()["error"]["code"] == "too_many_requests"
        gate.touch()
        assert first.result().status_code == 200
        assert second.result().status_code == 200
        assert first.result().json()["pid"] == second.result().json()["pid"]


def test_min_instances_are_kept_warm(test_apps_server):
    """minInstances start without traffic and survive their idle timeout."""
    test_apps_server.wait_for(lambda: test_apps_server.app("warm")["instances"] == 2,
                              "two warm instances")
    time.sleep(1.5)  # longer than idleTimeout: they must not be reaped
    assert test_apps_server.app("warm")["instances"] == 2
    r = test_apps_server.http.get("/warm/")
    assert r.status_code == 200
    inv = test_apps_server.admin.get("/apps/warm/invocations").json()[0]
    assert inv["cold"] is False


def test_scale_to_zero_after_idle_timeout_and_cold_start_recorded(test_apps_server):
    """An idle app goes to zero instances; the next request is a recorded cold start."""
    assert test_apps_server.http.get("/asyncapp/").status_code == 200
    test_apps_server.wait_for(lambda: test_apps_server.app("asyncapp")["instances"] == 0,
                              "scale to zero")
    r = test_apps_server.http.get("/asyncapp/")
    assert r.status_code == 200
    inv = test_apps_server.admin.get("/apps/asyncapp/invocations").json()[0]
    assert inv["cold"] is True
    assert inv["init_ms"] > 0
    assert inv["instance"]


def test_async_app_serves_concurrently_on_one_instance(test_apps_server):
    """An ASGI app takes many requests at once on a single instance (maxInstances 1)."""
    with cf.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: test_apps_server.http.get("/asyncapp/x?d=0.3"), range(8)))
    assert all(r.status_code == 200 for r in results)
    assert len({r.json()["pid"] for r in results}) == 1
    assert results[0].json()["root_path"] == "/asyncapp"
    assert results[0].json()["path"] == "/asyncapp/x"


def test_invocations_are_recorded_with_stats(test_apps_server):
    """Every invocation is recorded; ls shows requests and percentiles."""
    for _ in range(5):
        test_apps_server.http.get("/hello/")
    data = test_apps_server.app("hello")
    assert data["requests"] >= 5
    assert data["p50_ms"] is not None and data["p99_ms"] >= data["p50_ms"]
    inv = test_apps_server.admin.get("/apps/hello/invocations", params={"limit": 1}).json()[0]
    for key in ("app", "revision", "instance", "cold", "init_ms", "duration_ms", "status",
                "billed_ms"):
        assert key in inv
    assert inv["status"] == 200
    assert inv["billed_ms"] >= 1


def test_logs_carry_request_ids(test_apps_server):
    """What a handler prints lands in the app's logs with the request id."""
    r = test_apps_server.http.get("/hello/?name=logtest")
    rid = r.headers["x-skiff-request-id"]
    logs = test_apps_server.admin.get("/apps/hello/logs").json()
    mine = [entry for entry in logs if entry["request_id"] == rid]
    assert any(entry["line"] == "greeting logtest" and entry["stream"] == "stdout" for entry in mine)


def test_admin_api_requires_token(test_apps_server):
    """The admin API refuses requests without the token, and publishes OpenAPI."""
    r = httpx.get(test_apps_server.url + "/_skiff/api/apps")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    spec = httpx.get(test_apps_server.url + "/_skiff/api/openapi.json").json()
    assert "/_skiff/api/apps/{name}/rollback" in spec["paths"]


def test_apps_survive_a_restart(start_server, tmp_path):
    """Apps and revisions stay registered across a restart, even without the source dirs."""
    home = tmp_path / "home"
    server = start_server(TEST_APPS / "hello", home=home)
    rev = server.app("hello")["revision"]
    server.stop(signal.SIGKILL)
    again = start_server(home=home)
    assert again.app("hello")["revision"] == rev
    assert again.http.get("/hello/").status_code == 200
    # the kind detected at deploy is kept: a direct invoke still passes the event as is
    assert again.app("hello")["kind"] == "lambda"
    assert again.admin.post("/apps/hello/invoke", json={"n": 1}).json()["event"] == {"n": 1}


@pytest.fixture
def app_copy(tmp_path: Path):
    def copy(name: str) -> Path:
        import shutil

        dest = tmp_path / "src" / name
        shutil.copytree(TEST_APPS / name, dest)
        return dest

    return copy


def test_preinit_runs_init_once_and_restores_each_instance(test_apps_server):
    """With preinit the module init ran in the app zygote; each instance ran on_restore,
    got a fresh random seed, and lost sockets opened at init."""
    first = test_apps_server.http.get("/heavy/").json()
    assert first["model"] == 200_000
    assert first["init_pid"] != first["pid"]  # init happened before the fork
    assert first["restored"] is True
    assert first["leaked_socket_usable"] is False
    test_apps_server.wait_for(lambda: test_apps_server.app("heavy")["instances"] == 0,
                              "scale to zero")
    second = test_apps_server.http.get("/heavy/").json()
    assert second["pid"] != first["pid"]
    assert second["init_pid"] == first["init_pid"]  # same app zygote, init not repeated
    assert second["random"] != first["random"]
    inv = test_apps_server.admin.get("/apps/heavy/invocations").json()[0]
    assert inv["cold"] is True


def test_warm_window_keeps_instances_while_open(test_apps_server):
    """An open warm window keeps its minInstances warm past the idle timeout."""
    test_apps_server.wait_for(lambda: test_apps_server.app("office")["instances"] == 2,
                              "the window's two warm instances")
    time.sleep(1.5)  # beyond idleTimeout
    assert test_apps_server.app("office")["instances"] == 2


def test_cold_start_telemetry(test_apps_server):
    """Stopping instances makes the next request cold; ls reports the share, init time,
    the latency a cold start added and churn; records carry OpenTelemetry FaaS names."""
    http, admin = test_apps_server.http, test_apps_server.admin
    assert http.get("/hello/").status_code == 200
    assert admin.delete("/apps/hello/instances").json()["stopped"] >= 1
    test_apps_server.wait_for(lambda: test_apps_server.app("hello")["instances"] == 0, "zero")
    assert http.get("/hello/").status_code == 200
    data = test_apps_server.app("hello")
    assert data["cold_starts"] >= 1
    assert 0 < data["cold_start_ratio"] <= 1
    assert data["avg_init_ms"] > 0
    assert data["cold_start_added_p95_ms"] is not None
    assert data["churn_per_min"] >= 1
    attrs = admin.get("/apps/hello/invocations", params={"limit": 1}).json()[0]["attributes"]
    assert attrs["faas.coldstart"] is True
    assert attrs["faas.trigger"] == "http"


def test_admin_errors_have_codes(test_apps_server):
    """Unknown admin endpoints and invalid bodies answer in the same error format."""
    r = test_apps_server.admin.get("/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    r = test_apps_server.admin.post("/queues/q/messages", json={"attributes": 5})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_request"
    assert "body" in r.json()["error"]["message"]


def test_lambda_handlers_get_lambdas_environment(test_apps_server):
    """The reserved variables Lambda's Python runtime sets (Powertools and boto3 read
    them at import), from a SAM-style "file.function" handler string."""
    r = test_apps_server.http.get("/lambdaenv/")
    assert r.status_code == 200, r.text
    got = r.json()
    env = got["env"]
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_EXECUTION_ENV"].startswith("AWS_Lambda_python3.")
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == env["K_SERVICE"] == "lambdaenv"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == test_apps_server.app("lambdaenv")["revision"]
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == got["log_group"] == "/aws/lambda/lambdaenv"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == got["log_stream"]
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[[0-9a-f]+\][0-9a-f]{32}", got["log_stream"])
    assert env["LAMBDA_TASK_ROOT"] == got["cwd"]
    assert env["_HANDLER"] == "app.lambda_handler"
    assert env["GREETING"] == "hi" and env["LANG"] and env["TZ"]
    assert got["arn"] == "arn:aws:lambda:us-east-1:000000000000:function:lambdaenv"


def test_rest_api_handlers_get_payload_1_0_events(test_apps_server):
    """spec.http.payloadFormat "1.0": the handler gets a REST API proxy event
    (httpMethod, resource /{proxy+}, multiValue* fields) and its multiValueHeaders
    go out as repeated headers; its exception is answered as API Gateway does,
    the password in its message never reaching the caller."""
    r = test_apps_server.http.get("/restv1/orders/7?tag=a&tag=b")
    assert r.status_code == 200, r.text
    assert r.json() == {"method": "GET", "path": "/orders/7", "resource": "/{proxy+}",
                        "proxy": "orders/7", "tags": ["a", "b"], "stage": "Prod"}
    assert r.headers.get_list("x-seen") == ["one", "two"]
    r = test_apps_server.http.get("/restv1/boom")
    assert (r.status_code, r.json()) == (500, {"message": "Internal Server Error"})
    assert "ledger_admin" not in r.text and "10.0.0.7" not in r.text


def test_api_routes_bind_path_parameters_and_refuse_the_rest(test_apps_server):
    """spec.http.routes: routeKey and pathParameters as API Gateway sets them; a path
    no route takes is 404 and a wrong method 405 (with Allow), before any instance runs."""
    http = test_apps_server.http
    assert http.get("/itemsapi/items/42").json() == {
        "routeKey": "GET /items/{id}", "pathParameters": {"id": "42"}, "method": "GET"}
    assert http.post("/itemsapi/items").json()["routeKey"] == "POST /items"
    assert http.put("/itemsapi/files/a/b.txt").json() == {
        "routeKey": "ANY /files/{proxy+}", "pathParameters": {"proxy": "a/b.txt"},
        "method": "PUT"}
    r = http.get("/itemsapi/nothing")
    assert (r.status_code, r.json()) == (404, {"message": "Not Found"})
    r = http.put("/itemsapi/items/42")
    assert (r.status_code, r.json()) == (405, {"message": "Method Not Allowed"})
    assert r.headers["allow"] == "DELETE, GET"
