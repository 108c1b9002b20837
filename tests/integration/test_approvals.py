"""Approvals end to end (SKIFF_APPROVALS=1): a deploy asking for a new egress host or
secret ref is held (202 with the request id) while the previous revision serves; its
author may not approve it (403); an operator approves (it is deployed) or denies;
approved scopes are remembered; each decision is audited."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from skiff.cli.client import pack
from tests.conftest import SkiffServer

APPS = Path(__file__).parent / "lifecycle_apps"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path):
    home = tmp_path_factory.mktemp("home")
    server = SkiffServer(home, [APPS / "neighbour"], envs_dir, env={"SKIFF_APPROVALS": "1"})
    tokens = {}
    for user, role in (("alice", "developer"), ("bob", "developer"), ("olga", "operator"),
                       ("oscar", "operator")):
        server.admin.post("/users", json={"name": user}).raise_for_status()
        tokens[user] = server.admin.post("/tokens", json={"user": user, "role": role}
                                         ).json()["token"]
    server.admin.put("/secrets/shop-db", json={"value": "pw"}).raise_for_status()
    clients = {u: httpx.Client(base_url=server.url + "/_skiff/api", timeout=300,
                               headers={"authorization": f"Bearer {t}"})
               for u, t in tokens.items()}
    yield server, clients
    for c in clients.values():
        c.close()
    server.stop()


def _version(tmp: Path, version: str, *, egress: list[str] = (), secret: bool = False) -> Path:
    app = tmp / f"shop-{version}"
    shutil.copytree(APPS / "shop", app)
    (app / "handler.py").write_text((APPS / "shop" / "handler.py").read_text()
                                    .replace('"v1"', f'"{version}"'))
    spec = ""
    if egress:
        spec += f"  egress: [{', '.join(egress)}]\n"
    if secret:
        spec += '  secrets: [{name: DB, ref: "secret://shop-db"}]\n'
    (app / "skiff.yaml").write_text((app / "skiff.yaml").read_text() + spec)
    return app


def _deploy(client: httpx.Client, app: Path) -> httpx.Response:
    return client.post("/apps", content=pack(app), headers={"content-type": "application/gzip"})


def test_a_new_scope_waits_for_an_operator_who_is_not_its_author(shop, tmp_path: Path) -> None:
    server, c = shop
    assert _deploy(c["alice"], _version(tmp_path, "v1")).status_code == 201  # no scopes
    held = _deploy(c["alice"], _version(tmp_path, "v2", egress=["api.example.com"]))
    assert held.status_code == 202, held.text
    body = held.json()
    assert body["pending"] and body["scopes"] == ["egress:api.example.com"]
    assert server.http.get("/shop/").json() == {"version": "v1"}  # the old one serves
    assert [a["id"] for a in c["olga"].get("/approvals").json()] == [body["approval"]]
    own = c["alice"].post(f"/approvals/{body['approval']}/approve", json={})
    assert own.status_code == 403  # a developer, and its author
    approved = c["olga"].post(f"/approvals/{body['approval']}/approve",
                              json={"reason": "the payment API"})
    assert approved.status_code == 200, approved.text
    assert server.http.get("/shop/").json() == {"version": "v2"}
    again = c["oscar"].post(f"/approvals/{body['approval']}/approve", json={})
    assert again.status_code == 409 and again.json()["error"]["code"] == "approval_decided"
    # remembered: the same scope needs no approval again
    assert _deploy(c["alice"], _version(tmp_path, "v3", egress=["api.example.com"])
                   ).status_code == 201
    assert server.http.get("/shop/").json() == {"version": "v3"}


def test_an_operator_does_not_approve_its_own_request_and_denials_are_audited(
        shop, tmp_path: Path) -> None:
    server, c = shop
    held = _deploy(c["olga"], _version(tmp_path, "v4", egress=["api.example.com"], secret=True))
    assert held.status_code == 202 and held.json()["scopes"] == ["secret:shop-db"]
    rid = held.json()["approval"]
    own = c["olga"].post(f"/approvals/{rid}/approve", json={})
    assert own.status_code == 403 and own.json()["error"]["code"] == "self_approval"
    denied = c["oscar"].post(f"/approvals/{rid}/deny", json={"reason": "use the vault app"})
    assert denied.status_code == 200 and denied.json()["state"] == "denied"
    assert server.http.get("/shop/").json() == {"version": "v3"}
    assert c["olga"].get("/approvals").json() == []
    audit = server.admin.get("/audit", params={"app": "shop"}).json()
    seen = [(e["actor"], e["action"], e["decision"]) for e in audit]
    assert ("user:alice", "deploy", "pending") in seen
    assert ("user:olga", "approval.approve", "allowed") in seen
    assert ("user:oscar", "approval.deny", "allowed") in seen
    assert server.http.get("/neighbour/").json() == {"ok": True}


def test_the_cli_lists_and_decides(shop, tmp_path: Path) -> None:
    server, c = shop
    rid = _deploy(c["alice"], _version(tmp_path, "v5", egress=["mail.example.com"])
                  ).json()["approval"]
    env = os.environ | {"SKIFF_URL": server.url,
                        "SKIFF_ADMIN_TOKEN": c["oscar"].headers["authorization"][7:]}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "skiff", "approvals", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    listed = json.loads(cli("ls", "--json").stdout)
    assert [(a["id"], a["scopes"]) for a in listed] == [(rid, ["egress:mail.example.com"])]
    done = cli("approve", rid, "--reason", "newsletter")
    assert done.returncode == 0 and "approved" in done.stdout, done.stdout + done.stderr
    assert server.http.get("/shop/").json() == {"version": "v5"}
    assert json.loads(cli("ls", "--json").stdout) == []


def test_only_owners_or_operators_renew_remove_and_restore(shop) -> None:
    """Another developer can neither renew alice's app, nor remove it, nor restore it
    once archived (the restore is a deploy under the app's owner, policies and all)."""
    server, c = shop
    r = c["bob"].post("/apps/shop/renew", json={"days": 30, "reason": "mine now"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_owner"
    assert c["bob"].delete("/apps/shop").status_code == 403
    assert c["alice"].delete("/apps/shop").status_code == 200
    assert server.http.get("/shop/").status_code == 410
    r = c["bob"].post("/apps/shop/restore")
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_owner", r.text
    assert c["alice"].post("/apps/shop/restore").status_code == 200
    assert server.http.get("/shop/").json() == {"version": "v5"}
    assert server.http.get("/neighbour/").json() == {"ok": True}
