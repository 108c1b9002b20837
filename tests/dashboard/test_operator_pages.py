"""The operator pages in a real browser over one server with real data: the inventory
(alice's app with traffic and an undeclared egress host, an archived app), a renewal
from it, the approvals page (alice's held deploy approved in the browser, the admin's
own request refused with the API's 403), the budgets page; the API shows each result.
Screenshots not blank, no console errors, phone width, keyboard reachable."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from skiff.cli.client import pack
from skiff.dashboard import views
from tests.conftest import SkiffServer
from tests.dashboard.test_dashboard import UI, Watch, cookie, not_blank, token

APPS = Path(__file__).parent / "ops_apps"
DAY = 86400


def _deploy(client: httpx.Client, app: Path) -> httpx.Response:
    return client.post("/apps", content=pack(app), headers={"content-type": "application/gzip"})


def _variant(tmp: Path, name: str, version: str, egress: str) -> Path:
    """The shop app as ``name`` at ``version``, asking for one more egress host."""
    app = tmp / f"{name}-{version}"
    shutil.copytree(APPS / "shop", app)
    (app / "handler.py").write_text((APPS / "shop" / "handler.py").read_text()
                                    .replace('"v1"', f'"{version}"'))
    (app / "skiff.yaml").write_text((app / "skiff.yaml").read_text()
                                    .replace("name: shop", f"name: {name}")
                                    + f"  egress: [{egress}]\n")
    return app


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path):
    """shop (alice's, with traffic), spare (archived by `skiff rm`), a draft of bob's, a
    budget of alice's and two held deploys: alice's shop v2 and the admin's own new app
    memo."""
    tmp = tmp_path_factory.mktemp("apps")
    s = SkiffServer(tmp_path_factory.mktemp("home"), [APPS / "spare"], envs_dir,
                    env={"SKIFF_APPROVALS": "1"})
    s.admin.post("/users", json={"name": "alice"}).raise_for_status()
    alice = httpx.Client(base_url=s.url + "/_skiff/api", timeout=300, headers={
        "authorization": "Bearer " + s.admin.post("/tokens", json={
            "user": "alice", "role": "developer"}).json()["token"]})
    try:
        assert _deploy(alice, APPS / "shop").status_code == 201
        for path in ["/shop/"] * 6 + ["/shop/boom"] * 2 + ["/shop/call"]:
            s.http.get(path)
        assert s.wait_for(lambda: next(a for a in s.admin.get("/inventory").json()["apps"]
                                       if a["app"] == "shop")["requests"] == 9, "the records")
        assert s.admin.delete("/apps/spare").status_code == 200
        s.admin.post("/drafts", json=[{"name": "ledger", "kind": "lambda", "owner": "user:bob",
                                       "path": "ledger/handler.py"}]).raise_for_status()
        s.admin.put("/budgets", json={"owner": "user:alice", "metric": "requests",
                                      "limit": 12, "action": "notify"}).raise_for_status()
        held = _deploy(alice, _variant(tmp, "shop", "v2", "api.example.com"))
        assert held.status_code == 202, held.text
        own = _deploy(s.admin, _variant(tmp, "memo", "v1", "mail.example.com"))
        assert own.status_code == 202, own.text
        s.held = held.json()["approval"]  # type: ignore[attr-defined]
        s.own = own.json()["approval"]  # type: ignore[attr-defined]
        yield s
    finally:
        alice.close()
        s.stop()


def test_operator_pages_in_the_browser(world: SkiffServer, browser, tmp_path: Path) -> None:  # noqa: ANN001
    s = world
    context = browser.new_context(base_url=s.url)
    page = context.new_page()
    watch = Watch(page)
    page.goto(f"{UI}/inventory")  # signed out: the sign-in page, then back here
    page.fill("#token", token(s))
    page.press("#token", "Enter")
    page.wait_for_url(f"{s.url}{UI}/inventory")

    # inventory: owner, template, who deployed, TTL, traffic, cost, egress, archives
    shop = page.locator('tr[data-app="shop"]')
    cells = shop.locator("td").all_inner_texts()
    assert cells[:3] == ["user:alice", "running", "python-lambda"], cells
    assert cells[3].endswith("by user:alice")
    assert cells[5] in ("29.9 d", "30.0 d") and cells[8:10] == ["9", "2"], cells
    assert float(cells[10].split()[0]) > 0  # Skiff's cost per 1,000 requests
    draft = page.locator('tr[data-app="ledger"] td').all_inner_texts()
    assert draft[:2] == ["user:bob", "draft"] and draft[6] == "–", draft  # nothing to renew
    undeclared = page.locator("table.undeclared tr:has-text('api.undeclared.example')")
    assert "shop" in undeclared.inner_text()
    assert "skiff restore spare" in page.locator("table.archives").inner_text()
    page.screenshot(path=tmp_path / "inventory.png", full_page=True)
    not_blank(tmp_path / "inventory.png")

    # renew shop for 10 days from the inventory
    shop.locator("input[name=days]").fill("10")
    shop.locator("input[name=reason]").fill("demo next week")
    shop.locator("button:text-is('Renew')").click()
    page.wait_for_selector("#inventory .notice:has-text('renewed shop for 10 day(s)')")
    assert page.locator('tr[data-app="shop"] td.ttl-left').inner_text() in ("9.9 d", "10.0 d")
    expires = s.admin.get("/apps/shop/lifecycle").json()["expires"]
    assert abs(expires - (time.time() + 10 * DAY)) < 600

    # approvals: the admin's own request is refused with the API's message...
    page.click("nav a:text-is('Approvals')")
    page.wait_for_url(f"{s.url}{UI}/approvals")
    assert page.locator("table.approvals tbody tr").count() == 2
    page.locator(f'tr[data-approval="{s.own}"] button.approve').click()
    page.wait_for_selector("#approvals .error:has-text('self_approval')")
    assert "may not decide it" in page.locator("#approvals .error").inner_text()
    # ... and alice's is approved: it is deployed
    row = page.locator(f'tr[data-approval="{s.held}"]')
    row.locator("input[name=reason]").fill("the payment API")
    row.locator("button.approve").click()
    page.wait_for_selector(f"#approvals .notice:has-text('approved {s.held} (shop) as admin')")
    assert page.locator(f'tr[data-approval="{s.held}"]').count() == 0
    page.screenshot(path=tmp_path / "approvals.png", full_page=True)
    not_blank(tmp_path / "approvals.png")
    decided = next(a for a in s.admin.get("/approvals", params={"state": "approved"}).json()
                   if a["id"] == s.held)
    assert (decided["decided_by"], decided["reason"]) == ("admin", "the payment API")
    assert s.http.get("/shop/").json() == {"version": "v2"}
    assert [a["id"] for a in s.admin.get("/approvals").json()] == [s.own]

    # budgets: alice's 12 requests a month, 10 used (with the one just above)
    page.click("nav a:text-is('Budgets')")
    page.wait_for_url(f"{s.url}{UI}/budgets")
    cells = page.locator("table.budgets tr:has(th:text-is('user:alice')) td").all_inner_texts()
    assert cells[:5] == ["requests", "12", "10", "83.3 %", "warning"], cells
    page.screenshot(path=tmp_path / "budgets.png", full_page=True)
    not_blank(tmp_path / "budgets.png")

    # phone width: only the tables' boxes scroll; Tab alone reaches Renew
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{UI}/inventory")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=tmp_path / "inventory-phone.png", full_page=True)
    not_blank(tmp_path / "inventory-phone.png")
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Renew":
            break
    assert page.evaluate("document.activeElement.textContent") == "Renew"
    # the one error: the browser's own note of the self-approval's 403 answer
    assert [e for e in watch.errors if "status of 403" not in e] == [], watch.errors
    assert len(watch.errors) == 1, watch.errors
    context.close()


def test_actions_refuse_and_explain(world: SkiffServer) -> None:
    """Without htmx's header nothing is done (CSRF); a bad number of days and an unknown
    verb are refused with a status, a code and what to do."""
    s = world
    before = s.admin.get("/apps/shop/lifecycle").json()["expires"]
    with httpx.Client(base_url=s.url, headers=cookie(token(s))) as http:
        forged = http.post(f"{UI}/apps/shop/renew", data={"days": "90", "reason": "x"})
        assert forged.status_code == 403 and "csrf_header_required" in forged.text
        hx = {"hx-request": "true"}
        bad = http.post(f"{UI}/apps/shop/renew", data={"days": "ten", "reason": "x"},
                        headers=hx)
        assert bad.status_code == 400 and "whole number of days" in bad.text
        long = http.post(f"{UI}/apps/shop/renew", data={"days": "5000", "reason": "x"},
                         headers=hx)
        assert long.status_code == 403 and "SKIFF_POLICY_MAX_TTL_DAYS" in long.text
        assert 'data-app="shop"' in long.text  # the table is redrawn under the message
        verb = http.post(f"{UI}/approvals/{s.own}/delete", headers=hx)
        assert verb.status_code == 404 and "approved or denied" in verb.text
        forged = http.post(f"{UI}/approvals/{s.own}/deny", data={"reason": "x"})
        assert forged.status_code == 403
    assert s.admin.get("/apps/shop/lifecycle").json()["expires"] == before
    assert [a["id"] for a in s.admin.get("/approvals").json()] == [s.own]



def test_another_operator_denies_with_a_reason(world: SkiffServer) -> None:
    """The admin's own request, denied through the dashboard by another operator (her
    token signs in like any other): the page says so and the API has her reason."""
    s = world
    s.admin.post("/users", json={"name": "olga"}).raise_for_status()
    olga = s.admin.post("/tokens", json={"user": "olga", "role": "operator"}).json()["token"]
    with httpx.Client(base_url=s.url, headers=cookie(olga)) as http:
        done = http.post(f"{UI}/approvals/{s.own}/deny", data={"reason": "use the mail app"},
                         headers={"hx-request": "true"})
    assert done.status_code == 200, done.text
    assert f"denied {s.own} (memo) as " in done.text and "No pending requests." in done.text
    row = next(a for a in s.admin.get("/approvals", params={"state": ""}).json()
               if a["id"] == s.own)
    assert (row["state"], row["reason"]) == ("denied", "use the mail app")
    assert "olga" in row["decided_by"]
    assert s.admin.get("/apps/memo").status_code == 404  # never deployed

@pytest.mark.parametrize(("row", "attention"), [
    ({"ttl_left_days": 30.0, "policy": {"status": "ok"}}, False),
    ({"ttl_left_days": 6.9, "policy": {"status": "ok"}}, True),
    ({"ttl_left_days": 7.0, "policy": {"status": "warn"}}, False),
    ({"ttl_left_days": None, "policy": {"status": "deny"}}, True),
    ({"ttl_left_days": None, "policy": {"status": "unknown"}}, False),  # a draft
])
def test_inventory_marks_what_needs_attention(row: dict, attention: bool) -> None:
    assert views.inventory_rows([row])[0]["attention"] is attention


def test_budget_and_archive_order() -> None:
    budgets = [{"owner": "user:b", "metric": "cost", "percent": 50.0},
               {"owner": "user:a", "metric": "requests", "percent": 50.0},
               {"owner": "user:c", "metric": "gb_s", "percent": 101.0}]
    assert [b["owner"] for b in views.budgets_order(budgets)] == ["user:c", "user:a", "user:b"]
    archives = [{"app": "old", "archived": 1.0}, {"app": "new", "archived": 2.0}]
    assert [a["app"] for a in views.archives_order(archives)] == ["new", "old"]
