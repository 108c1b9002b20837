"""The roll-out of issue 9, end to end on one real server: a discovery sweep of a git
repository finds micro apps nobody registered; they become drafts their owners
claim; an operator's policy pack denies two deploys with clear messages; one asks
for a new egress host and waits until an operator approves it; the clock moves
and the 30- and 7-day reminders reach a webhook and an SMTP server; the app
expires, is archived with its KV data and answers 410; `skiff restore` brings it
back with its data; its owner's budget reaches 80 % (told) and 100 %: its routes
answer 429 budget_exceeded and its queue waits, until the operator raises the
budget and the held message runs; another owner's budget scales its app to zero;
`skiff audit` shows each step with its actor. The clock moves through the admin
API's sweep (``now``), never by sleeping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

from skiff.cli.client import pack
from tests.conftest import SkiffServer
from tests.governance.sweep_repo import ALICE, BOB, git
from tests.integration.test_lifecycle import DAY
from tests.receivers import Mailbox, Webhook, free_port

APPS = Path(__file__).parent / "lifecycle_apps"
LEDGER = (APPS / "notes" / "handler.py").read_text()  # KV hits, records its queue's messages
PLAIN = "def handler(event, context):\n    return {'ok': True}\n"
#: the repository the sweep runs over: (author, files), each a Lambda handler
REPO = {"ledger": (ALICE, LEDGER), "hog": (ALICE, PLAIN), "quotes": (BOB, PLAIN),
        "forever": (BOB, PLAIN)}
#: what each owner writes once they claim their draft
MANIFESTS = {
    "ledger": "metadata: {name: ledger, owner: user:alice}\nspec:\n  handler: handler:handler\n"
              "  ttlDays: 40\n  triggers: [{queue: ledger-inbox}]\n"
              "  queues: [{name: ledger-inbox}]\n",
    "hog": "metadata: {name: hog, owner: user:alice}\nspec:\n  handler: handler:handler\n"
           "  ttlDays: 30\n  resources: {memoryMB: 2048}\n",
    "quotes": "metadata: {name: quotes, owner: user:bob}\nspec:\n  handler: handler:handler\n"
              "  ttlDays: 80\n  egress: [api.quotes.example]\n  scaling: {minInstances: 1}\n",
    "forever": "metadata: {name: forever, owner: user:bob}\nspec:\n  handler: handler:handler\n",
}
PACK = """policies:
  - id: acme.memory-cap
    enforcement: deny
    message: apps ask for at most 512 MB (spec.resources.memoryMB); ask ops for more
    expression: input.manifest.spec.resources.memoryMB <= 512
  - id: acme.ttl-required
    enforcement: deny
    message: every app says how long it lives (spec.ttlDays); pick 30, 60 or 90
    expression: type(input.manifest.spec.ttlDays) != null_type
"""


def _repo(root: Path) -> Path:
    repo = root / "sweep"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for name, (author, text) in REPO.items():
        (repo / name).mkdir()
        (repo / name / "handler.py").write_text(text)
        git(repo, "add", f"{name}/handler.py")
        git(repo, "commit", "-q", "-m", f"add {name}", author=author)
    return repo


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path):
    hook, mailbox = Webhook(), Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    server = SkiffServer(tmp_path_factory.mktemp("home"), [], envs_dir, env={
        "SKIFF_APPROVALS": "1", "SKIFF_NOTIFY_WEBHOOK": hook.url,
        "SKIFF_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}", "SKIFF_NOTIFY_EMAIL": "ops@example.com",
        "SKIFF_QUOTA_INSTANCES": "12"})
    tokens = {}
    for user, role in (("alice", "developer"), ("bob", "developer"), ("olga", "operator")):
        server.admin.post("/users", json={"name": user}).raise_for_status()
        tokens[user] = server.admin.post("/tokens", json={"user": user, "role": role}
                                         ).json()["token"]
    clients = {u: httpx.Client(base_url=server.url + "/_skiff/api", timeout=300,
                               headers={"authorization": f"Bearer {t}"})
               for u, t in tokens.items()}
    yield server, clients, tokens, hook, mailbox
    for c in clients.values():
        c.close()
    server.stop()
    smtp.stop()
    hook.server.shutdown()


def _cli(server: SkiffServer, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SKIFF_ADMIN_TOKEN": token, "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "skiff", *args, "--url", server.url],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _deploy(client: httpx.Client, app: Path) -> httpx.Response:
    return client.post("/apps", content=pack(app), headers={"content-type": "application/gzip"})


def _tick(server: SkiffServer, now: float | None = None) -> dict:
    resp = server.admin.post("/lifecycle/tick", json={"now": now})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_roll_out_from_discovery_to_budget(world, tmp_path: Path) -> None:
    server, c, tokens, hook, mailbox = world
    # -- discovery: four unregistered apps; drafts for the owners git points at ------------
    repo = _repo(tmp_path)
    found = json.loads(_cli(server, tokens["alice"], "discover", str(repo), "--register",
                            "--json").stdout)
    assert {d["name"]: d["guessed_owner"] for d in found["drafts"]} == {
        "ledger": ALICE, "hog": ALICE, "quotes": BOB, "forever": BOB}
    for user, names in (("alice", ("ledger", "hog")), ("bob", ("quotes", "forever"))):
        for name in names:
            claimed = c[user].post(f"/drafts/{name}/claim")
            assert claimed.json()["claimed_by"] == f"user:{user}", claimed.text
            (repo / name / "skiff.yaml").write_text("apiVersion: skiff.dev/v1\nkind: MicroApp\n"
                                                    + MANIFESTS[name])

    # -- the operator's policy pack denies two, each saying why ---------------------------
    assert server.admin.post("/policies", json={"text": PACK}).json()["applied"] == [
        "acme.memory-cap", "acme.ttl-required"]
    for user, name, policy, says in (
            ("alice", "hog", "acme.memory-cap", "at most 512 MB"),
            ("bob", "forever", "acme.ttl-required", "spec.ttlDays")):
        denied = _deploy(c[user], repo / name)
        assert denied.status_code == 403, denied.text
        err = denied.json()["error"]
        assert err["code"] == "policy_denied" and f"{policy}: " in err["message"]
        assert says in err["message"] and [d["policy"] for d in err["denials"]] == [policy]
    assert _deploy(c["alice"], repo / "ledger").status_code == 201

    # -- a new egress host waits for an operator's approval ------------------------------
    held = _deploy(c["bob"], repo / "quotes")
    assert held.status_code == 202 and held.json()["scopes"] == ["egress:api.quotes.example"]
    assert server.http.get("/quotes/").status_code == 404  # nothing serves meanwhile
    approved = c["olga"].post(f"/approvals/{held.json()['approval']}/approve",
                              json={"reason": "the quotes API is vetted"})
    assert approved.status_code == 200, approved.text
    assert server.http.get("/quotes/").json() == {"ok": True}
    # more instances than bob's quota (12 summed) is an elevated scope too
    (repo / "quotes" / "skiff.yaml").write_text((repo / "quotes" / "skiff.yaml").read_text()
                                                .replace("minInstances: 1", "maxInstances: 20"))
    over = _deploy(c["bob"], repo / "quotes")
    assert over.status_code == 202 and over.json()["scopes"] == ["quota:instances"], over.text

    # -- the clock moves: reminders at 30 and 7 days, at the webhook and by mail ----------
    assert server.http.get("/ledger/hit").json() == {"hits": 1}
    assert server.http.get("/ledger/hit").json() == {"hits": 2}
    since = c["alice"].get("/apps/ledger/lifecycle").json()["since"]
    assert [r["days"] for r in _tick(server, since + 11 * DAY)["reminded"]] == [30]
    assert [r["days"] for r in _tick(server, since + 34 * DAY)["reminded"]] == [7]
    assert [e["data"]["days_left"] for e in hook.events
            if e["type"] == "skiff.app.expiring" and e["subject"] == "ledger"] == [30, 7]
    mails = [m for m in mailbox.messages if "Subject: Skiff app ledger expires" in m]
    assert len(mails) == 2 and "in 30 days" in mails[0] and "in 7 days" in mails[1]

    # -- expiry: archived with its KV data, 410; restore brings it back -------------------
    swept = _tick(server, since + 41 * DAY)
    assert [a["app"] for a in swept["archived"]] == ["ledger"]
    with tarfile.open(swept["archived"][0]["archive"]) as tar:
        kv = tar.extractfile("kv.jsonl").read().decode()
    assert {"key": "hits", "value": 2, "expires_at": None} in map(json.loads, kv.splitlines())
    gone = server.http.get("/ledger/hit")
    assert gone.status_code == 410 and "skiff restore ledger" in gone.json()["error"]["message"]
    assert server.http.get("/quotes/").status_code == 200  # the other app serves on
    assert "restored ledger" in _cli(server, tokens["alice"], "restore", "ledger").stdout
    assert [server.http.get("/ledger/hit").json()["hits"] for _ in range(3)] == [3, 4, 5]

    # -- cost per owner, and a budget: 80 % told, 100 % throttled ---------------------------
    # (the records of the app before it expired were retired with it: 3 since the restore)
    server.wait_for(lambda: c["olga"].get("/cost", params={"by": "owner"}).json()["rows"][0][
        "requests"] >= 3, "alice's records")
    used = next(r for r in c["olga"].get("/cost", params={"by": "owner"}).json()["rows"]
                if r["owner"] == "user:alice")
    assert used["apps"] == ["ledger"] and used["requests"] == 3
    assert used["cost"]["skiff"] > 0 and used["gb_s"] > 0
    assert set(used["per_1k_requests"]) == {"skiff", "lambda_x86", "lambda_arm", "cloud_run"}
    _cli(server, tokens["olga"], "budgets", "set", "user:alice", "--requests", "5")

    def budget_used(n: int) -> None:
        server.wait_for(lambda: c["olga"].get("/budgets").json()[0]["used"] >= n,
                        f"the record of request {n}")

    assert c["olga"].get("/budgets").json()[0]["state"] == "ok"  # 3 of 5
    assert server.http.get("/ledger/hit").status_code == 200
    budget_used(4)
    _tick(server)  # the notice of 80 % goes out (the minute's sweep may have sent it)
    assert c["olga"].get("/budgets").json()[0]["state"] == "warning"
    assert server.http.get("/ledger/hit").status_code == 200
    budget_used(5)
    assert _tick(server)["budgets"]["throttled"] == ["ledger"]
    throttled = server.http.get("/ledger/hit")
    assert throttled.status_code == 429, throttled.text
    err = throttled.json()["error"]
    assert err["code"] == "budget_exceeded" and err["budget"] == "user:alice/requests"
    assert int(throttled.headers["retry-after"]) >= 1 and "skiff budgets set" in err["message"]
    notices = [e["data"] for e in hook.events if e["type"] == "skiff.budget.threshold"]
    assert [(n["budget"], n["threshold"]) for n in notices] == [
        ("user:alice/requests", 80), ("user:alice/requests", 100)]
    assert len([m for m in mailbox.messages if "Subject: Skiff budget user:alice" in m]) == 2
    # queued work waits, not lost: it runs once the operator raises the budget
    c["olga"].post("/queues/ledger-inbox/messages", json={"body": "held"}).raise_for_status()
    _tick(server)
    assert [m["body"] for m in c["olga"].get("/queues/ledger-inbox/messages").json()] == ["held"]
    assert c["olga"].get("/apps/ledger/kv/seen:held").status_code == 404
    c["olga"].put("/budgets", json={"owner": "user:alice", "metric": "requests",
                                    "limit": 1000}).raise_for_status()
    server.wait_for(lambda: c["olga"].get("/apps/ledger/kv/seen:held").status_code == 200,
                    "the held message to run")
    assert server.http.get("/ledger/hit").json() == {"hits": 8}
    # bob's budget scales his app to zero instead (its minInstances too): it still answers,
    # on an instance started for the request
    server.wait_for(lambda: c["olga"].get("/apps/quotes").json()["instances"] == 1,
                    "quotes' warm instance")
    c["olga"].put("/budgets", json={"owner": "user:bob", "metric": "requests", "limit": 1,
                                    "action": "scale-to-zero"}).raise_for_status()
    assert c["olga"].get("/apps/quotes").json()["instances"] == 0
    _tick(server)  # the pool rescales meanwhile (every 0.1 s): its minimum is 0 now
    assert c["olga"].get("/apps/quotes").json()["instances"] == 0
    assert server.http.get("/quotes/").json() == {"ok": True}
    listed = _cli(server, tokens["olga"], "budgets", "ls").stdout
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in listed.splitlines()]
    assert ["user:bob", "requests", "1", "exceeded", "scale-to-zero", "scale-to-zero"] in [
        r[:3] + r[5:] for r in rows if len(r) == 8], listed  # used: 2 or 3 by now
    removed = c["olga"].delete("/budgets/user:bob")
    assert removed.json()["removed"] == 1, removed.text
    server.wait_for(lambda: c["olga"].get("/apps/quotes").json()["instances"] == 1,
                    "quotes' minimum to be back")

    # -- the audit trail: each step, with its actor --------------------------------------
    audit = json.loads(_cli(server, tokens["olga"], "audit", "--json").stdout)
    steps = {(e["actor"], e["action"], e["target"], e["decision"]) for e in audit}
    for step in (("user:alice", "draft.register", "ledger", "allowed"),
                 ("user:bob", "draft.claim", "quotes", "allowed"),
                 ("admin", "policy.apply", "policy:acme.memory-cap", "allowed"),
                 ("user:alice", "deploy", "hog", "denied"),
                 ("user:bob", "deploy", "forever", "denied"),
                 ("user:alice", "deploy", "ledger", "allowed"),
                 ("user:olga", "approval.approve", "quotes", "allowed"),
                 ("system:lifecycle", "archive", "ledger", "allowed"),
                 ("user:alice", "restore", "ledger", "allowed"),
                 ("user:olga", "budget.set", "budget:user:alice/requests", "allowed"),
                 ("system:budgets", "budget.threshold", "budget:user:alice/requests", "allowed"),
                 ("system:budgets", "budget.throttle", "ledger", "allowed"),
                 ("system:budgets", "budget.release", "ledger", "allowed"),
                 ("system:budgets", "budget.scale-to-zero", "quotes", "allowed")):
        assert step in steps, step
