"""Inventory and discovery against a real server: an app with traffic shows its owner,
template, who deployed it, TTL left, scopes, requests and errors of the last hour, and
the egress host it tried that no app declares (HTTP and `skiff inventory`); a
discovery sweep of a real git repository registers drafts that the inventory lists
with the owners git points at; an owner claims one and deploys it."""

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
from tests.governance.sweep_repo import ALICE, BOB, make_repo

APPS = Path(__file__).parent / "inventory_apps"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path):
    home = tmp_path_factory.mktemp("home")
    server = SkiffServer(home, [], envs_dir)
    tokens = {}
    for user, role in (("alice", "developer"), ("bob", "developer"), ("vera", "viewer")):
        server.admin.post("/users", json={"name": user}).raise_for_status()
        tokens[user] = server.admin.post("/tokens", json={"user": user, "role": role}
                                         ).json()["token"]
    clients = {u: httpx.Client(base_url=server.url + "/_skiff/api", timeout=300,
                               headers={"authorization": f"Bearer {t}"})
               for u, t in tokens.items()}
    deployed = clients["alice"].post("/apps", content=pack(APPS / "tapas"),
                                     headers={"content-type": "application/gzip"})
    assert deployed.status_code == 201, deployed.text
    for path in ["/tapas/"] * 5 + ["/tapas/boom"] * 2 + ["/tapas/call"]:
        server.http.get(path)
    yield server, clients, tokens
    for c in clients.values():
        c.close()
    server.stop()


def _row(inv: dict, name: str) -> dict:
    return next(a for a in inv["apps"] if a["app"] == name)


def _cli(server: SkiffServer, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SKIFF_ADMIN_TOKEN": token, "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "skiff", *args, "--url", server.url],
                          capture_output=True, text=True, timeout=120, env=env)


def test_inventory_shows_owner_ttl_scopes_and_traffic(served) -> None:
    server, c, _ = served
    inv = server.wait_for(lambda: (r := c["vera"].get("/inventory")).status_code == 200
                          and _row(r.json(), "tapas")["requests"] == 8 and r.json(),
                          "the eight requests in the records")
    row = _row(inv, "tapas")
    assert row["owner"] == "user:alice" and row["status"] == "running"
    assert row["template"] == "python-lambda"
    assert row["last_deploy"]["by"] == "user:alice"
    assert row["ttl_days"] == 30 and 29.9 <= row["ttl_left_days"] <= 30.0
    assert row["scopes"] == {"egress": ["pypi.org"], "secrets": [], "routes": []}
    assert row["errors"] == 2 and row["rate_per_min"] == round(8 / 60, 2)
    assert row["policy"]["status"] in ("ok", "warn")
    cost = row["cost"]  # the last 30 days of the same records, priced by the cost model
    assert cost["requests"] == 8 and cost["window_days"] == 30 and cost["gb_s"] > 0
    assert cost["per_1k_requests"] == pytest.approx(cost["total"] / 8 * 1000, rel=1e-4)
    assert set(cost["compare_per_1k_requests"]) == {"lambda_x86", "lambda_arm", "cloud_run"}
    attempted = [h for h in inv["undeclared_egress"] if h["host"] == "api.undeclared.example"]
    assert attempted and attempted[0]["apps"] == ["tapas"]


def test_inventory_needs_a_caller(served) -> None:
    server, _, _ = served
    refused = httpx.get(server.url + "/_skiff/api/inventory")
    assert refused.status_code == 401


def test_cli_table_fits_80_columns(served) -> None:
    server, _, tokens = served
    done = _cli(server, tokens["vera"], "inventory")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("APP") and max(map(len, lines)) <= 80
    tapas = next(line for line in lines if line.startswith("tapas"))
    assert tapas.split()[:3] == ["tapas", "alice", "running"] and "30d" in tapas.split()
    as_json = json.loads(_cli(server, tokens["vera"], "inventory", "--json").stdout)
    assert _row(as_json, "tapas")["errors"] == 2


def test_discovered_apps_become_drafts_for_their_owners(served, tmp_path: Path) -> None:
    server, c, tokens = served
    repo = make_repo(tmp_path)
    shutil.copytree(APPS / "tapas", repo / "tapas")  # deployed already: left out
    done = _cli(server, tokens["alice"], "discover", str(repo), "--register", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "tapas" not in {f["name"] for f in result["finds"]}
    assert {d["name"] for d in result["drafts"]} == {"billing", "menu", "ordersfunction",
                                                     "rota", "notes"}
    drafts = {a["app"]: a for a in c["vera"].get("/inventory").json()["apps"]
              if a["status"] == "draft"}
    assert {n: d["owner"] for n, d in drafts.items()} == {
        "billing": ALICE, "menu": BOB, "ordersfunction": ALICE, "rota": BOB, "notes": ALICE}
    assert drafts["menu"]["draft"]["kind"] == "asgi"
    # claimed by its owner; nobody else takes it then; viewers claim nothing
    assert c["vera"].post("/drafts/menu/claim").status_code == 403
    claimed = c["bob"].post("/drafts/menu/claim")
    assert claimed.status_code == 200 and claimed.json()["claimed_by"] == "user:bob"
    taken = c["alice"].post("/drafts/menu/claim")
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "draft_claimed"
    assert "user:bob" in taken.json()["error"]["message"]
    missing = c["bob"].post("/drafts/nope/claim")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "draft_not_found"
    # the claimed name is bob's: alice may not deploy it as her own first
    grab = tmp_path / "menu-grab"
    shutil.copytree(APPS / "tapas", grab)
    (grab / "skiff.yaml").write_text((grab / "skiff.yaml").read_text().replace("tapas", "menu"))
    refused = c["alice"].post("/apps", content=pack(grab),
                              headers={"content-type": "application/gzip"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "draft_claimed"
    assert "user:bob" in refused.json()["error"]["message"]
    # bob deploys it: an app now, the draft gone from the inventory
    app = tmp_path / "menu-app"
    shutil.copytree(APPS / "tapas", app)
    (app / "skiff.yaml").write_text((app / "skiff.yaml").read_text()
                                    .replace("tapas", "menu").replace("alice", "bob"))
    assert c["bob"].post("/apps", content=pack(app),
                         headers={"content-type": "application/gzip"}).status_code == 201
    rows = [a for a in c["vera"].get("/inventory").json()["apps"] if a["app"] == "menu"]
    assert [(r["status"], r["owner"]) for r in rows] == [("running", "user:bob")]
    audit = [e["action"] for e in c["vera"].get("/audit", params={"app": "menu"}).json()]
    assert audit[:2] == ["draft.register", "draft.claim"] and "deploy" in audit


def test_bad_finds_are_refused_with_a_reason(served) -> None:
    _, c, _ = served
    for body, needle in ((b"{", "JSON"), (b'{"name": "x"}', "list"),
                         (b'[{"name": "Bad Name", "kind": "lambda", "path": "/x"}]', "app name"),
                         (b'[{"name": "ok", "kind": "cobol", "path": "/x"}]', "kind must be")):
        r = c["alice"].post("/drafts", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_drafts", r.text
        assert needle in r.json()["error"]["message"]
    assert c["vera"].post("/drafts", json=[]).status_code == 403


def test_cost_and_budgets_refuse_bad_input_with_a_reason(served) -> None:
    """Beside the inventory's cost: what the cost and budget routes refuse, and who may
    set budgets (operators), each with its code and what to do."""
    server, c, tokens = served
    by_app = c["vera"].get("/cost", params={"since": "1d"}).json()
    tapas = next(r for r in by_app["rows"] if r["app"] == "tapas")
    assert tapas["owner"] == "user:alice" and tapas["requests"] == 8
    for params, needle in (({"by": "team"}, "by must be app or owner"),
                           ({"since": "yesterday"}, "is not a time"),
                           ({"since": "1h", "until": "2h"}, "until is before since")):
        bad = c["vera"].get("/cost", params=params)
        assert bad.status_code == 400 and needle in bad.json()["error"]["message"], bad.text
    assert c["alice"].put("/budgets", json={"owner": "user:alice", "metric": "cost",
                                            "limit": 5}).status_code == 403  # not an operator
    for body, needle in (({"owner": "alice", "metric": "cost", "limit": 5}, "user:NAME"),
                         ({"owner": "user:alice", "metric": "usd", "limit": 5}, "metric"),
                         ({"owner": "user:alice", "metric": "cost", "limit": -1}, "above 0"),
                         ({"owner": "user:alice", "metric": "cost", "limit": 5,
                           "action": "delete"}, "action")):
        bad = server.admin.put("/budgets", json=body)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_budget", bad.text
        assert needle in bad.json()["error"]["message"]
    missing = server.admin.delete("/budgets/user:nobody")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "budget_not_found"
    assert "skiff budgets ls" in missing.json()["error"]["message"]
    shown = _cli(server, tokens["vera"], "cost")
    assert shown.returncode == 0 and "tapas" in shown.stdout, shown.stderr
