"""SLO alerts end to end on one server: real traffic with errors burns the shop
app's budget, the evaluation (its clock moved through the admin API, never by
sleeping) fires once per episode to a Slack-compatible webhook and SMTP while a
plain webhook that answers 500 shows as failing, in the API and on the page; the
user acknowledges in the browser; a silence keeps a recovery quiet; the history
tells it all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import SkiffServer
from tests.dashboard.test_dashboard import UI, Watch, not_blank, token
from tests.receivers import Mailbox, free_port

APPS = Path(__file__).parent / "alert_apps"
SLO = "slo_availability:shop"
ERRORS = "error_rate:shop"


class Receiver:
    """/slack records each JSON body and answers 200; /down answers 500."""

    def __init__(self) -> None:
        self.slack: list[dict] = []
        self.down = 0
        me = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/slack":
                    me.slack.append(json.loads(body))
                    self.send_response(200)
                else:
                    me.down += 1
                    self.send_response(500)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path):
    hooks, mailbox = Receiver(), Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    server = SkiffServer(tmp_path_factory.mktemp("home"), [APPS], envs_dir, env={
        "SKIFF_NOTIFY_WEBHOOK": f"{hooks.url}/down",
        "SKIFF_NOTIFY_SLACK_WEBHOOK": f"{hooks.url}/slack",
        "SKIFF_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}", "SKIFF_NOTIFY_EMAIL": "ops@example.com",
        "SKIFF_ALERT_EVERY_SECONDS": "0"})  # only the test's evaluations, at its clock
    try:
        yield server, hooks, mailbox
    finally:
        server.stop()
        smtp.stop()
        hooks.server.shutdown()


def _evaluate(s: SkiffServer, now: float) -> dict:
    resp = s.admin.post("/alerts/evaluate", json={"now": now})
    assert resp.status_code == 200, resp.text
    return resp.json()


def _alert(s: SkiffServer, key: str) -> dict:
    return next(a for a in s.admin.get("/alerts").json()["alerts"] if a["id"] == key)


def test_errors_fire_once_per_episode_and_a_failing_webhook_shows(world) -> None:
    """Half the requests fail: the 1 h / 5 min burn pair and the error-rate rule fire;
    a second evaluation tells nobody again; Slack and mail get one notice each, the
    500-answering webhook is failing with its error and a retry time."""
    s, hooks, mailbox = world
    assert _evaluate(s, time.time())["firing"] == []  # no traffic, nothing burns
    for _ in range(20):
        assert s.http.get("/shop/").status_code == 200
        assert s.http.get("/shop/fail").status_code == 500
    now = time.time() + 1
    first = _evaluate(s, now)
    assert first["fired"] == [ERRORS, SLO]
    assert (first["delivered"], first["failed"]) == (4, 2)  # slack + mail ok, webhook down
    again = _evaluate(s, now + 60)  # ... the webhook's retry is due (1 min backoff): fails
    assert again["fired"] == [] and again["firing"] == [ERRORS, SLO]
    assert (again["delivered"], again["failed"]) == (0, 2) and hooks.down == 4
    texts = sorted(m["text"] for m in hooks.slack)
    assert len(texts) == 2 and texts[0].startswith("[FIRING page] shop burns its error budget")
    assert len(mailbox.messages) == 2 and "skiff alerts ack" in mailbox.messages[0]
    alert = _alert(s, SLO)
    assert (alert["state"], alert["severity"], alert["episode"]) == ("firing", "page", 1)
    notices = {n["channel"]: n for n in alert["notifications"]}
    assert notices["slack"]["state"] == notices["email"]["state"] == "delivered"
    assert notices["webhook"]["state"] == "failing"
    assert "500" in notices["webhook"]["error"] and notices["webhook"]["next_at"] > now
    channels = {c["channel"]: c for c in s.admin.get("/alerts").json()["channels"]}
    assert channels["webhook"]["state"] == "failing" and channels["slack"]["state"] == "delivered"
    assert _evaluate(s, now + 61)["failed"] == 0  # the next try waits 2 min (backoff)


def skiff(s: SkiffServer, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SKIFF_HOME": str(s.home), "COLUMNS": "250"}
    env.pop("SKIFF_ADMIN_TOKEN", None)  # the home's token, as an operator's shell has it
    return subprocess.run([sys.executable, "-m", "skiff", "alerts", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_cli_lists_and_silences(world, monkeypatch: pytest.MonkeyPatch) -> None:
    """`skiff alerts ls` (a subprocess, as an operator runs it) shows the firing alerts
    and the failing webhook; `skiff alerts silence` (in-process: a second interpreter
    start costs seconds) makes a silence the API lists."""
    from typer.testing import CliRunner

    from skiff.cli.app import app

    s, _, _ = world
    ls = skiff(s, "ls")
    assert ls.returncode == 0, ls.stderr
    assert SLO in ls.stdout and ERRORS in ls.stdout and "webhook failing" in ls.stdout
    monkeypatch.setenv("SKIFF_HOME", str(s.home))
    monkeypatch.delenv("SKIFF_ADMIN_TOKEN", raising=False)
    made = CliRunner().invoke(app, ["alerts", "silence", "--app", "nothing-here", "--for", "1h",
                                    "--comment", "drill"])
    assert made.exit_code == 0 and "subject=nothing-here" in made.output, made.output
    (silence,) = s.admin.get("/alerts/silences").json()
    assert (silence["matchers"], silence["comment"]) == ({"subject": "nothing-here"}, "drill")
    assert 3590 < silence["until"] - silence["created"] <= 3600
    assert s.admin.delete(f"/alerts/silences/{silence['id']}").status_code == 200
    assert s.admin.get("/alerts/silences").json() == []


def test_the_user_acknowledges_in_the_browser(world, browser, tmp_path: Path) -> None:  # noqa: ANN001
    """The alerts page lists the firing alert and the failing webhook; Acknowledge
    records the signed-in user, as the API then says; screenshot not blank."""
    s, _, _ = world
    context = browser.new_context(base_url=s.url)
    page = context.new_page()
    watch = Watch(page)
    page.goto(f"{UI}/alerts")
    page.fill("#token", token(s))
    page.press("#token", "Enter")
    page.wait_for_url(f"{s.url}{UI}/alerts")
    row = page.locator(f'tr[data-alert="{SLO}"]')
    assert "firing" in row.inner_text() and "burns its error budget" in row.inner_text()
    assert "webhook failing" in page.locator("#channel-webhook").inner_text()
    assert "webhook: failing" in row.inner_text()
    page.screenshot(path=tmp_path / "alerts.png", full_page=True)
    not_blank(tmp_path / "alerts.png")
    row.locator("button.ack").click()
    page.wait_for_selector("#alerts .notice")
    assert f"acknowledged {SLO} as admin" in page.locator("#alerts .notice").inner_text()
    assert "admin at" in page.locator(f'tr[data-alert="{SLO}"]').inner_text()
    page.screenshot(path=tmp_path / "alerts-acked.png", full_page=True)
    not_blank(tmp_path / "alerts-acked.png")
    assert watch.errors == []
    context.close()
    alert = _alert(s, SLO)
    assert alert["acked_by"] == "admin" and alert["acked_at"]
    # a form post from elsewhere (no HX-Request header) acknowledges nothing
    resp = s.http.post(f"{UI}/alerts/{ERRORS}/ack",
                       headers={"cookie": f"skiff_ui_token={token(s)}"})
    assert resp.status_code == 403 and _alert(s, ERRORS)["acked_by"] is None


def test_a_silence_keeps_a_recovery_quiet_and_the_history_tells_it(world) -> None:
    """Silence error_rate; two days on nothing burns: both resolve, only the SLO's
    recovery is told; history has fired, acked, silenced and resolved."""
    s, hooks, mailbox = world
    made = s.admin.post("/alerts/silences", json={"matchers": {"rule": "error_*"},
                                                  "duration": 3 * 86400, "comment": "known"})
    assert made.status_code == 201, made.text
    assert [x["id"] for x in s.admin.get("/alerts/silences").json()] == [made.json()["id"]]
    later = _evaluate(s, _alert(s, SLO)["started"] + 2 * 86400)  # two days after it fired
    assert later["resolved"] == [ERRORS, SLO] and later["firing"] == []
    resolved = [m["text"] for m in hooks.slack if m["text"].startswith("[RESOLVED]")]
    assert resolved == [f"[RESOLVED] {SLO} after 2880 min"]
    events = [(e["id"], e["event"]) for e in s.admin.get("/alerts/history").json()]
    assert {(SLO, "fired"), (SLO, "acked"), (SLO, "resolved"), (ERRORS, "resolved"),
            (f"silence:{made.json()['id']}", "silenced")} <= set(events)
    assert _alert(s, SLO)["acked_by"] == "admin"  # the ack stays on its episode
    audited = {(e["action"], e["target"]) for e in s.admin.get("/audit").json()}
    assert {("alert.ack", SLO), ("alert.silence", f"silence:{made.json()['id']}")} <= audited


def test_bad_input(world) -> None:
    """Each refused with its status, code and what to do."""
    s, _, _ = world
    cases = [
        (s.admin.post("/alerts/nope:x/ack"), 404, "alert_not_found"),
        (s.admin.post(f"/alerts/{SLO}/ack"), 409, "alert_not_firing"),
        (s.admin.post("/alerts/silences", json={"matchers": {}}), 400, "bad_silence"),
        (s.admin.post("/alerts/silences", json={"matchers": {"app": "x"}}), 400, "bad_silence"),
        (s.admin.post("/alerts/silences", json={"matchers": {"rule": "x"}, "duration": -5}),
         400, "bad_silence"),
        (s.admin.delete("/alerts/silences/nope"), 404, "silence_not_found"),
        (s.admin.get("/alerts", params={"state": "burning"}), 400, "bad_value"),
    ]
    for resp, status, code in cases:
        assert resp.status_code == status, resp.text
        assert resp.json()["error"]["code"] == code, resp.text
