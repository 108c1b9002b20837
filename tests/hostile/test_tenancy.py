"""Routes, queues and data belong to exactly one app: a hostile app cannot take
another's traffic, send into its queues, or inherit what a deleted app of the
same name left; one app's output cannot crowd out another's logs. A neighbour
app keeps answering throughout.

Needs root (as CI runs): the sandbox layers are kernel features."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from skiff.cli.client import pack
from tests.conftest import SkiffServer
from tests.hostile.conftest import APPS, neighbour_watch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")

TENANT = Path(__file__).parent / "tenancy_apps" / "tenant"
LOG_CAP = 3000  # SKIFF_LOG_MAX_LINES_PER_APP of this module's server


@pytest.fixture(scope="module")
def box(tmp_path_factory, envs_dir):
    """The module's server, in a box so the restart test can replace it."""
    src = tmp_path_factory.mktemp("apps")
    shutil.copytree(APPS / "neighbour", src / "neighbour")
    home = tmp_path_factory.mktemp("home")
    env = {"SKIFF_LOG_MAX_LINES_PER_APP": str(LOG_CAP)}
    holder = {"src": src, "home": home, "envs": envs_dir, "env": env,
              "server": SkiffServer(home, [src], envs_dir, env=env)}
    yield holder
    holder["server"].stop()


@pytest.fixture
def skiff(box) -> SkiffServer:
    return box["server"]


def deploy(skiff: SkiffServer, tmp_path: Path, name: str, **spec) -> httpx.Response:
    """Deploy the tenant app as ``name`` with these spec fields (camelCase)."""
    app_dir = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}"
    app_dir.mkdir()
    shutil.copy(TENANT / "handler.py", app_dir / "handler.py")
    manifest = {"apiVersion": "skiff.dev/v1", "kind": "MicroApp",
                "metadata": {"name": name, "owner": "tests@example.com"},
                "spec": {"handler": "handler:handler", **spec}}
    (app_dir / "skiff.yaml").write_text(yaml.safe_dump(manifest))
    return skiff.admin.post("/apps", content=pack(app_dir),
                            headers={"content-type": "application/gzip"})


def deployed(skiff: SkiffServer, tmp_path: Path, name: str, **spec) -> dict:
    r = deploy(skiff, tmp_path, name, **spec)
    assert r.status_code == 201, r.text
    return r.json()


def cli(skiff: SkiffServer, *args: str) -> str:
    env = {**os.environ, "SKIFF_HOME": str(skiff.home), "COLUMNS": "200"}
    env.pop("SKIFF_ADMIN_TOKEN", None)
    proc = subprocess.run([sys.executable, "-m", "skiff", *args], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, f"skiff {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def neighbour_serves(skiff: SkiffServer) -> None:
    assert skiff.http.get("/neighbour/").json() == {"ok": True}
    assert skiff.http.get("/", headers={"host": "neighbour.localhost"}).json() == {"ok": True}


# -- 7. routes -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shop(box, tmp_path_factory):
    """An app with extra routes of its own, for hijacks of a manifest route."""
    return deployed(box["server"], tmp_path_factory.mktemp("shop"), "shop",
                    routes=[{"path": "/store"}, {"host": "shop.example.com"}])


@pytest.mark.parametrize(("routes", "owner"), [
    ([{"path": "/neighbour"}], "neighbour"),
    ([{"path": "/neighbour/admin"}], "neighbour"),
    ([{"host": "neighbour.localhost"}], "neighbour"),
    ([{"host": "neighbour.localhost", "path": "/api"}], "neighbour"),
    ([{"host": "not-yet-deployed.localhost"}], "not-yet-deployed"),
    ([{"path": "/"}], None),
    ([{"host": "localhost"}], "the platform"),
    ([{"host": "127.0.0.1"}], "the platform"),
    ([{"path": "/store"}], "shop"),
    ([{"path": "/store/cart"}], "shop"),
    ([{"host": "shop.example.com", "path": "/checkout"}], "shop"),
], ids=lambda v: str(v).replace(" ", ""))
def test_route_hijack_is_refused(skiff, shop, tmp_path, routes, owner):
    """A route over another app's traffic is refused with 409 route_conflict naming
    the owner; the squatter is not served and the neighbour keeps its traffic."""
    with neighbour_watch(skiff):
        r = deploy(skiff, tmp_path, "squatter", routes=routes)
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "route_conflict"
    if owner is None:  # the catch-all is over every app: one of them is named
        assert error["owner"] not in (None, "squatter")
    else:
        assert error["owner"] == owner
    assert "skiff routes grant squatter" in error["message"]
    assert skiff.admin.get("/apps/squatter").status_code == 404
    neighbour_serves(skiff)
    assert skiff.http.get("/store/x").json()["app"] == "shop"
    assert skiff.http.get("/x", headers={"host": "shop.example.com"}).json()["app"] == "shop"


def test_a_route_no_one_has_is_served(skiff, shop, tmp_path):
    """Routes that overlap nothing deploy as before, beside the others."""
    deployed(skiff, tmp_path, "blog", routes=[{"path": "/posts"}, {"host": "blog.example.com"},
                                              {"path": "/storefront"}])
    assert skiff.http.get("/posts/1").json() == {"app": "blog", "path": "/1"}
    assert skiff.http.get("/storefront").json()["app"] == "blog"
    assert skiff.http.get("/", headers={"host": "blog.example.com"}).json()["app"] == "blog"


def test_a_granted_catch_all_serves_what_no_app_owns(skiff, tmp_path):
    """The operator grants a route (`skiff routes grant`, persisted); the app then
    deploys with it and gets unrouted traffic, while owned defaults still win.
    Deleting the app drops its routes and its grants."""
    assert "granted" in cli(skiff, "routes", "grant", "frontpage", "--path", "/")
    assert "frontpage" in cli(skiff, "routes", "grants")
    with neighbour_watch(skiff):
        deployed(skiff, tmp_path, "frontpage", routes=[{"path": "/"}])
        assert skiff.http.get("/no-app-here/x").json() == {"app": "frontpage",
                                                           "path": "/no-app-here/x"}
    neighbour_serves(skiff)
    assert skiff.admin.delete("/apps/frontpage").status_code == 200
    assert skiff.http.get("/no-app-here/x").status_code == 404
    assert skiff.admin.get("/route-grants").json() == []
    neighbour_serves(skiff)


# -- 10. queues ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vault(box, tmp_path_factory):
    """vault consumes vault-jobs (so owns it and vault-jobs-dlq) and owns vault-inbox,
    which only friend may send to; stranger is any other app."""
    server, tmp = box["server"], tmp_path_factory.mktemp("vault")
    deployed(server, tmp, "vault", triggers=[{"queue": "vault-jobs", "maxReceiveCount": 1}],
             queues=[{"name": "vault-inbox", "allowFrom": ["friend"]}])
    deployed(server, tmp, "friend")
    deployed(server, tmp, "stranger")
    return server


def send(skiff: SkiffServer, app: str, queue: str, body: str = "") -> dict:
    params = {"queue": queue, **({"body": body} if body else {})}
    return skiff.http.get(f"/{app}/send", params=params).json()


@pytest.mark.parametrize(("sender", "queue", "code"), [
    ("friend", "vault-jobs", "queue_forbidden"),
    ("stranger", "vault-inbox", "queue_forbidden"),
    ("stranger", "vault-jobs", "queue_forbidden"),
    ("stranger", "vault-jobs-dlq", "queue_forbidden"),
    ("stranger", "vault-dlq", "queue_forbidden"),
    ("stranger", "nobody-owns-this", "queue_not_found"),
    ("stranger", "skiff:async:vault", "reserved_queue"),
])
def test_cannot_send_to_another_apps_queue(vault, sender, queue, code):
    """skiff.sdk sends only to the sender's own queues and to those whose owner
    allows it; nothing of the refused sends arrives."""
    skiff = vault
    with neighbour_watch(skiff):
        result = send(skiff, sender, queue)
    status = {"queue_forbidden": 403, "queue_not_found": 404, "reserved_queue": 400}[code]
    assert result == {"ok": False, "code": code, "status": status}
    peek = skiff.admin.get(f"/queues/{queue}/messages")
    if code == "queue_not_found":  # the refused send made no queue
        assert peek.status_code == 404 and peek.json()["error"]["code"] == "queue_not_found"
    else:
        assert not [m for m in peek.json() if m["body"].startswith(f"from {sender}")]


def test_owner_allowed_apps_and_operator_can_send(vault):
    """The owner sends to its own queues, an app in allowFrom to that queue, and the
    operator (admin API, `skiff queues send`) anywhere; the consumer gets them."""
    skiff = vault
    assert send(skiff, "vault", "vault-jobs", "self")["ok"]
    assert send(skiff, "friend", "vault-inbox", "friendly")["ok"]
    cli(skiff, "queues", "send", "vault-jobs", "operator")
    for body in ("self", "operator"):
        skiff.wait_for(lambda b=body: skiff.admin.get(f"/apps/vault/kv/got:{b}").status_code
                       == 200, f"vault to consume {body!r}")
    assert [m["body"] for m in skiff.admin.get("/queues/vault-inbox/messages").json()] == [
        "friendly"]


@pytest.mark.parametrize(("spec", "status", "code"), [
    ({"triggers": [{"queue": "vault-jobs"}]}, 409, "queue_conflict"),
    ({"triggers": [{"queue": "mine", "deadLetterQueue": "vault-jobs-dlq"}]}, 409,
     "queue_conflict"),
    ({"queues": [{"name": "vault-dlq"}]}, 409, "queue_conflict"),
    ({"queues": [{"name": "vault-inbox", "allowFrom": ["thief"]}]}, 409, "queue_conflict"),
    ({"async": {"onFailure": "vault-inbox"}}, 403, "queue_forbidden"),
])
def test_cannot_claim_another_apps_queue(vault, tmp_path, spec, status, code):
    """A queue has one owner: a second app declaring it (or routing its async results
    into it without being allowed) is refused at deploy, naming the owner."""
    with neighbour_watch(vault):
        r = deploy(vault, tmp_path, "thief", **spec)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["owner"] == "vault"
    assert vault.admin.get("/apps/thief").status_code == 404


def test_an_allowed_app_may_send_its_async_results_there(vault, tmp_path):
    """allowFrom also covers the platform sending an app's async results for it,
    and the owner still redeploys its queue."""
    deployed(vault, tmp_path, "friend", **{"async": {"onSuccess": "vault-inbox"}})
    deployed(vault, tmp_path, "vault", triggers=[{"queue": "vault-jobs", "maxReceiveCount": 1}],
             queues=[{"name": "vault-inbox", "allowFrom": ["friend", "stranger"]}])
    assert send(vault, "stranger", "vault-inbox", "now allowed")["ok"]


# -- 18. logs --------------------------------------------------------------------------

def app_logs(skiff: SkiffServer, app: str) -> list[dict]:
    rows, after = [], 0
    while True:
        page = skiff.admin.get(f"/apps/{app}/logs", params={"after": after, "limit": 5000}).json()
        if not page:
            return rows
        rows += page
        after = page[-1]["seq"]


def test_an_app_printing_at_the_limit_stays_under_its_log_cap(skiff, tmp_path):
    """Lines past SKIFF_LOG_MAX_LINES_PER_APP go oldest first, and another app's
    lines are kept."""
    deployed(skiff, tmp_path, "quiet")
    deployed(skiff, tmp_path, "chatty")
    assert skiff.http.get("/quiet/print", params={"n": 3, "tag": "quiet-marker"}).json()["ok"]
    with neighbour_watch(skiff):  # 1,000 lines a second: the per-instance rate limit
        assert skiff.http.get("/chatty/print", params={"n": 1000, "seconds": 5,
                                                       "tag": "chatty"}).json()["ok"]
    skiff.wait_for(lambda: [r for r in app_logs(skiff, "chatty") if r["line"] == "chatty 4:999"],
                   "the last lines to be written")
    skiff.wait_for(lambda: len(app_logs(skiff, "chatty")) <= LOG_CAP, "pruning to the cap")
    chatty = app_logs(skiff, "chatty")
    assert LOG_CAP // 2 < len(chatty) <= LOG_CAP
    assert not [r for r in chatty if "deployed" in r["line"]], "the oldest lines go first"
    quiet = [r["line"] for r in app_logs(skiff, "quiet")]
    assert [line for line in quiet if line.startswith("quiet-marker")] == [
        "quiet-marker 0:0", "quiet-marker 0:1", "quiet-marker 0:2"]
    assert [line for line in quiet if "deployed" in line]


# -- 8. deletion -----------------------------------------------------------------------

def queue_names(skiff: SkiffServer) -> set[str]:
    return {q["name"] for q in skiff.admin.get("/queues").json()}


def test_deleting_an_app_deletes_what_it_owned(box, tmp_path):
    """After `skiff rm --purge`, and across a restart, an app of the same name starts with
    nothing: no KV items, queues, messages, async records, revisions or routes."""
    skiff = box["server"]
    first = deployed(skiff, tmp_path, "keeper", routes=[{"path": "/kept"}],
                     triggers=[{"queue": "keeper-jobs", "maxReceiveCount": 1},
                               {"schedule": "rate(1 hour)"}],
                     queues=[{"name": "keeper-box"}])
    assert skiff.http.get("/keeper/put", params={"key": "diary", "value": "secret"}).json()["ok"]
    skiff.admin.post("/queues/keeper-box/messages", json={"body": "left behind"})
    skiff.admin.post("/queues/keeper-jobs-dlq/messages", json={"body": "dead letter"})
    inv = skiff.admin.post("/apps/keeper/invoke", json={},
                           headers={"x-skiff-invocation-type": "Event"}).json()["invocation_id"]
    assert skiff.admin.get(f"/invocations/{inv}").status_code == 200
    revisions = skiff.home / "revisions" / "keeper"
    assert (revisions / first["revision"]).is_dir()
    owned = {"keeper-box", "keeper-jobs", "keeper-jobs-dlq", "skiff:async:keeper"}
    assert owned <= queue_names(skiff)

    with neighbour_watch(skiff):
        out = cli(skiff, "rm", "keeper", "--purge", "--yes")  # no archive: nothing may stay
    assert "deleted keeper" in out and "keeper@deleted-" in out
    assert skiff.admin.get("/apps/keeper").status_code == 404
    assert not owned & queue_names(skiff)
    assert skiff.admin.get(f"/invocations/{inv}").status_code == 404
    assert not revisions.exists()
    assert skiff.http.get("/kept/x").status_code == 404

    skiff.stop()  # a restart must not bring it (or its data) back
    skiff = box["server"] = SkiffServer(box["home"], [box["src"]], box["envs"], env=box["env"])
    assert skiff.admin.get("/apps/keeper").status_code == 404
    neighbour_serves(skiff)

    deployed(skiff, tmp_path, "keeper")  # a different app under the same name
    assert skiff.http.get("/keeper/get", params={"key": "diary"}).json() == {
        "ok": True, "result": None}
    assert skiff.http.get("/keeper/keys").json() == {"ok": True, "result": []}
    assert not {"keeper-box", "keeper-jobs", "keeper-jobs-dlq"} & queue_names(skiff)
    assert [r["revision"] for r in skiff.admin.get("/apps/keeper/revisions").json()] != [
        first["revision"]]
    assert len(skiff.admin.get("/apps/keeper/revisions").json()) == 1
    # the first app's history is kept for audit, but not as this app's
    assert {r["revision"] for r in skiff.admin.get("/apps/keeper/logs").json()} <= {
        skiff.app("keeper")["revision"], ""}
    assert skiff.app("keeper")["requests"] == 2
