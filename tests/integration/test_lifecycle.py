"""TTL end to end on one server: reminders at 30 and 7 days arrive once each at a
webhook and an SMTP server on loopback; at expiry the app is archived (its KV
data, pending messages and secret refs in the archive, never the value) and
answers 410; restore brings it back with its data; rm + restore; a restore onto
a name another app has now is 409. The clock moves through the admin API's
sweep (``now``), never by sleeping; a neighbour app serves throughout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from skiff.cli.client import pack
from tests.conftest import SkiffServer
from tests.postgres import postgres_url
from tests.receivers import Mailbox, Webhook, free_port

APPS = Path(__file__).parent / "lifecycle_apps"
DAY = 86400.0
SECRET_VALUE = "notes-secret-value-7d1f"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest):
    """The server's SKIFF_DATABASE_URL: the embedded default, or a migrated database of
    its own on the test PostgreSQL."""
    if request.param == "sqlite":
        yield {}
        return
    import psycopg

    base = postgres_url()
    name = f"ttl_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = base.rsplit("/", 1)[0] + "/" + name
    migrated = subprocess.run([sys.executable, "-m", "skiff", "migrate", "--database-url", url],
                              capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    yield {"SKIFF_DATABASE_URL": url}
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path, database: dict):
    hook = Webhook()
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    home = tmp_path_factory.mktemp("home")
    server = SkiffServer(home, [APPS / "neighbour"], envs_dir, env={
        "SKIFF_NOTIFY_WEBHOOK": hook.url, "SKIFF_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
        "SKIFF_NOTIFY_EMAIL": "ops@example.com",
        "SKIFF_DEFAULT_TTL_DAYS": "0",  # the neighbour never expires: 0 is "no TTL"
        **database})
    server.admin.put("/secrets/notes-key", json={"value": SECRET_VALUE}).raise_for_status()
    yield server, hook, mailbox
    server.stop()
    smtp.stop()
    hook.server.shutdown()


def _deploy(server: SkiffServer, app: Path) -> dict:
    resp = server.admin.post("/apps", content=pack(app),
                             headers={"content-type": "application/gzip"})
    assert resp.status_code == 201, resp.text
    return resp.json()


def _tick(server: SkiffServer, now: float) -> dict:
    resp = server.admin.post("/lifecycle/tick", json={"now": now})
    assert resp.status_code == 200, resp.text
    return resp.json()


def _neighbour_ok(server: SkiffServer) -> None:
    resp = server.http.get("/neighbour/")
    assert resp.status_code == 200 and resp.json() == {"ok": True}


def _expiring(hook: Webhook) -> list[int]:
    return [e["data"]["days_left"] for e in hook.events
            if e["type"] == "skiff.app.expiring" and e["subject"] == "notes"]


def test_reminders_at_30_and_7_days_arrive_once_each(world) -> None:
    server, hook, mailbox = world
    _deploy(server, APPS / "notes")
    since = server.admin.get("/apps/notes/lifecycle").json()["since"]
    assert server.admin.get("/apps/notes/lifecycle").json()["ttl_days"] == 40
    assert _tick(server, since + 9 * DAY)["reminded"] == []  # 31 days left
    first = _tick(server, since + 11 * DAY)
    assert first["reminded"] == [{"app": "notes", "days": 30, "expires": since + 40 * DAY}]
    assert _tick(server, since + 12 * DAY)["reminded"] == []  # once
    assert _tick(server, since + 34 * DAY)["reminded"][0]["days"] == 7
    assert _tick(server, since + 35 * DAY)["reminded"] == []
    assert _expiring(hook) == [30, 7]
    mails = [m for m in mailbox.messages if "Subject: Skiff app notes expires" in m]
    assert len(mails) == 2 and "in 30 days" in mails[0] and "in 7 days" in mails[1]
    assert "skiff renew notes" in mails[0]
    _neighbour_ok(server)


def test_expiry_archives_answers_410_and_restore_brings_data_back(world) -> None:
    server, hook, _ = world
    assert server.http.get("/notes/hit").json() == {"hits": 1}
    assert server.http.get("/notes/hit").json() == {"hits": 2}
    # a message that waits: pending when the app expires
    server.admin.post("/queues/notes-inbox/messages",
                      json={"body": "later", "delay": 3600}).raise_for_status()
    since = server.admin.get("/apps/notes/lifecycle").json()["since"]
    swept = _tick(server, since + 41 * DAY)
    assert [a["app"] for a in swept["archived"]] == ["notes"]
    path = Path(swept["archived"][0]["archive"])
    assert path.parent == server.home / "archive" and path.name.startswith("notes-")
    with tarfile.open(path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    assert {"key": "hits", "value": 2, "expires_at": None} in [
        json.loads(x) for x in files["kv.jsonl"].splitlines()]
    assert [json.loads(x)["queue"] for x in files["messages.jsonl"].splitlines()] == [
        "notes-inbox"]
    meta = json.loads(files["app.json"])
    assert meta["secret_refs"] == [{"name": "NOTES_KEY", "ref": "secret://notes-key"}]
    assert not any(SECRET_VALUE.encode() in data for data in files.values())
    gone = server.http.get("/notes/hit")
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "app_archived"
    assert "skiff restore notes" in gone.json()["error"]["message"]
    assert server.admin.get("/apps/notes").status_code == 404
    assert "skiff.app.expired" in [e["type"] for e in hook.events]
    _neighbour_ok(server)

    restored = server.admin.post("/apps/notes/restore")
    assert restored.status_code == 200, restored.text
    assert restored.json()["kv_items"] == 1 and restored.json()["messages"] == 1
    assert server.http.get("/notes/hit").json() == {"hits": 3}
    # the trigger is back: the restored message is consumed
    server.wait_for(lambda: server.admin.get("/apps/notes/kv/seen:later").status_code == 200,
                    "the restored message to be consumed")
    audit = server.admin.get("/audit", params={"app": "notes"}).json()
    assert ("system:lifecycle", "archive") in [(e["actor"], e["action"]) for e in audit]
    assert ("admin", "restore", "allowed") in [
        (e["actor"], e["action"], e["decision"]) for e in audit]
    _neighbour_ok(server)


def test_rm_archives_and_restore_onto_a_taken_name_is_409(world, tmp_path: Path) -> None:
    server, _, _ = world
    removed = server.admin.delete("/apps/notes")
    assert removed.status_code == 200, removed.text
    assert Path(removed.json()["archive"]).is_file()
    assert server.http.get("/notes/").status_code == 410
    # another app takes the name meanwhile
    impostor = tmp_path / "notes"
    impostor.mkdir()
    (impostor / "skiff.yaml").write_text((APPS / "neighbour" / "skiff.yaml").read_text()
                                         .replace("name: neighbour", "name: notes"))
    (impostor / "handler.py").write_text((APPS / "neighbour" / "handler.py").read_text())
    _deploy(server, impostor)
    taken = server.admin.post("/apps/notes/restore")
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "name_taken"
    assert server.http.get("/notes/").json() == {"ok": True}  # the new one serves on
    purged = server.admin.delete("/apps/notes", params={"purge": "true"})
    assert purged.status_code == 200 and "archive" not in purged.json()
    # the impostor left nothing; the archive of ours is still there, and restores
    assert server.http.get("/notes/").status_code == 410
    restored = server.admin.post("/apps/notes/restore")
    assert restored.status_code == 200, restored.text
    assert server.http.get("/notes/hit").json() == {"hits": 4}
    assert not Path(removed.json()["archive"]).exists()  # the app holds its data again
    # rm --purge keeps nothing: no archive, no 410, nothing to restore
    assert "archive" not in server.admin.delete("/apps/notes", params={"purge": "true"}).json()
    assert server.http.get("/notes/").status_code == 404
    assert server.admin.post("/apps/notes/restore").json()["error"]["code"] == \
        "archive_not_found"
    assert not list((server.home / "revisions").glob("notes"))
    _neighbour_ok(server)


def test_renew_is_limited_by_the_policy_maximum_and_audited(world) -> None:
    server, _, _ = world
    _deploy(server, APPS / "notes")
    too_long = server.admin.post("/apps/notes/renew", json={"days": 91, "reason": "more"})
    assert too_long.status_code == 403 and too_long.json()["error"]["code"] == "ttl_over_max"
    ok = server.admin.post("/apps/notes/renew", json={"days": 80, "reason": "quarter end"})
    assert ok.status_code == 200, ok.text
    status = server.admin.get("/apps/notes/lifecycle").json()
    assert status["ttl_days"] == 80 and status["renewed"] and status["reminded"] == []
    audit = server.admin.get("/audit", params={"app": "notes"}).json()
    assert [e["decision"] for e in audit if e["action"] == "renew"] == ["denied", "allowed"]


def _cli(server: SkiffServer, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SKIFF_ADMIN_TOKEN"}
    return subprocess.run([sys.executable, "-m", "skiff", *args],
                          env=env | {"SKIFF_HOME": str(server.home), "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=120)


def test_the_cli_renews_removes_lists_and_restores(world) -> None:
    server, _, _ = world
    renewed = _cli(server, "renew", "notes", "--days", "30", "--reason", "demo next week")
    assert renewed.returncode == 0 and "renewed notes for 30 day(s)" in renewed.stdout, \
        renewed.stdout + renewed.stderr
    refused = _cli(server, "renew", "notes", "--days", "365", "--reason", "forever")
    assert refused.returncode != 0 and "SKIFF_POLICY_MAX_TTL_DAYS" in refused.stdout + \
        refused.stderr
    removed = _cli(server, "rm", "notes", "--yes")
    assert removed.returncode == 0 and "skiff restore notes" in removed.stdout, removed.stdout
    listed = json.loads(_cli(server, "archives", "--json").stdout)
    assert [(a["app"], a["reason"]) for a in listed] == [("notes", "removed")]
    restored = _cli(server, "restore", "notes")
    assert restored.returncode == 0 and "restored notes" in restored.stdout, \
        restored.stdout + restored.stderr
    assert server.http.get("/notes/").status_code == 200
    _neighbour_ok(server)


def test_an_app_labelled_throttle_is_paused_at_expiry_until_renewed(world, tmp_path) -> None:
    """skiff.dev/on-expiry: throttle: at expiry nothing is archived; the routes answer 429
    app_expired with Retry-After, the reminders said so, and a renewal serves it again."""
    server, _, mailbox = world
    app = tmp_path / "memo"
    shutil.copytree(APPS / "notes", app)
    (app / "skiff.yaml").write_text(
        "apiVersion: skiff.dev/v1\nkind: MicroApp\n"
        "metadata: {name: memo, owner: user:ana, labels: {skiff.dev/on-expiry: throttle}}\n"
        "spec: {handler: handler:handler, ttlDays: 10,\n"
        "       triggers: [{queue: memo-inbox}], queues: [{name: memo-inbox}]}\n")
    _deploy(server, app)
    since = server.admin.get("/apps/memo/lifecycle").json()["since"]
    _tick(server, since + 4 * DAY)  # the 7-day reminder
    assert any("Skiff app memo expires" in m and "answer 429 until it is renewed" in m
               for m in mailbox.messages)
    swept = _tick(server, since + 11 * DAY)
    assert swept["paused"] == ["memo"] and "memo" not in [a["app"] for a in swept["archived"]]
    paused = server.http.get("/memo/hit")
    assert paused.status_code == 429 and paused.headers["retry-after"] == "3600"
    assert paused.json()["error"]["code"] == "app_expired"
    assert "skiff renew memo" in paused.json()["error"]["message"]
    # its queued work waits too (nothing consumed, nothing lost) ...
    server.admin.post("/queues/memo-inbox/messages", json={"body": "held"}).raise_for_status()
    time.sleep(1.0)  # a consumer takes a message within milliseconds; none is wired
    queued = server.admin.get("/queues/memo-inbox/messages").json()
    assert [(m["body"], m["receive_count"]) for m in queued] == [("held", 0)]
    assert _tick(server, since + 12 * DAY)["paused"] == []  # recorded once, still paused
    assert server.http.get("/memo/hit").status_code == 429
    _neighbour_ok(server)
    renewed = server.admin.post("/apps/memo/renew", json={"days": 30, "reason": "still used"})
    assert renewed.status_code == 200, renewed.text
    assert server.http.get("/memo/hit").status_code == 200  # ... and runs once renewed
    server.wait_for(lambda: server.admin.get("/apps/memo/kv/seen:held").status_code == 200,
                    "the held message to run once the app is renewed")
    audit = server.admin.get("/audit", params={"app": "memo"}).json()
    assert ("system:lifecycle", "expire.throttle") in [(e["actor"], e["action"]) for e in audit]
