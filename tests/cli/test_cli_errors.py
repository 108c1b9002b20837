"""No traceback for a user's mistake, ever: each case of the issue's list, run as a
person runs it (a subprocess), ends in a message, a stable code and what to do.
Unknown queues are a 404 queue_not_found, not a new queue, unless --create."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.cliproc import failed, run_inprocess, run_skiff

# the list, each as a subprocess (argv, code, words the message must hold)
LISTED = [
    (["kv", "put", "hello", "k", "notjson"], "bad_json", "the value is not JSON"),
    (["publish", "orders.created", "--data", "{"], "bad_json", "--data is not JSON"),
    (["queues", "send", "ordrs", "hi"], "queue_not_found", "no queue named 'ordrs'"),
    (["queues", "peek", "ordrs"], "queue_not_found", "skiff queues ls"),
    (["ls", "--colour"], "bad_usage", "No such option: --colour"),
    (["ls", "--url", "http://127.0.0.1:9"], "unreachable",
     "cannot reach Skiff at http://127.0.0.1:9 (from --url)"),
]
# more of the same, in-process (same mapping, no interpreter start-up)
MORE = [
    (["invoke", "hello", "--data", "{"], "bad_event", "--data must be JSON"),
    (["queues", "purge", "ordrs"], "queue_not_found", "no queue named 'ordrs'"),
    (["queues", "redrive", "ordrs-dlq"], "queue_not_found", "no queue named 'ordrs-dlq'"),
    (["logs"], "bad_usage", "Missing argument"),
    (["rollback", "no-such-app"], "app_not_found", "no-such-app"),
    (["context", "use", "nowhere"], "context_not_found", "skiff login URL --name NAME"),
    (["login", "ftp://x"], "bad_url", "http://HOST:PORT"),
]


def test_user_errors_read_as_messages(server, tmp_path, admin_env):
    with ThreadPoolExecutor(3) as pool:
        runs = list(pool.map(
            lambda c: run_skiff(*c[0], cwd=tmp_path, config=tmp_path, env=admin_env), LISTED))
    for (argv, code, words), done in zip(LISTED, runs, strict=True):
        msg = failed(done, code)
        assert words in msg, (argv, msg)
        assert done.returncode == (2 if code == "bad_usage" else 1), (argv, done.returncode)
        if code == "bad_usage":
            assert "hint: see `" in msg and "--help`" in msg
    # the mistyped send made no queue
    assert "ordrs" not in {q["name"] for q in server.admin.get("/queues").json()}


@pytest.mark.parametrize(("argv", "code", "words"), MORE, ids=[" ".join(c[0]) for c in MORE])
def test_more_user_errors(server, tmp_path, monkeypatch, admin_env, argv, code, words):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    status, out, err = run_inprocess(monkeypatch, *argv, env=admin_env)
    msg = " ".join(err.split())
    assert status == (2 if code == "bad_usage" else 1), (status, out, err)
    assert f"[{code}]" in msg and words in msg and "Traceback" not in out + err, msg


def test_send_create_makes_the_queue_then_it_is_known(server, monkeypatch, admin_env):
    status, out, err = run_inprocess(monkeypatch, "queues", "send", "made-here", "hi",
                                     "--create", env=admin_env)
    assert status == 0 and "sent" in out, err
    peek = server.admin.get("/queues/made-here/messages").json()
    assert [m["body"] for m in peek] == ["hi"]
    assert server.admin.post("/queues/made-here/messages", json={"body": "again"}).status_code == 202


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/queues/nope/messages"), ("GET", "/queues/nope/messages"),
    ("DELETE", "/queues/nope/messages"), ("POST", "/queues/nope/redrive"),
    ("POST", "/queues/hello-dlq/redrive?to=nope"),
])
def test_admin_api_unknown_queue_is_404(server, method, path):
    r = server.admin.request(method, path, json={"body": "x"} if method == "POST" else None)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "queue_not_found"


def test_declared_queues_answer(server):
    """An app's own dead-letter queue is known before anything was sent to it."""
    assert server.admin.get("/queues/hello-dlq/messages").json() == []
    assert server.admin.delete("/queues/hello-dlq/messages").json() == {"purged": 0}
