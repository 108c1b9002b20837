"""The workflows pages in a real browser over one server: orders-flow (a machine of app
orders, started by POST /orders/checkout) has run once to success and once to a failed
charge; the list and both execution pages show what the admin API says, each state's
duration included. Screenshots not blank, no console errors."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from skiff.dashboard import views
from tests.conftest import SkiffServer
from tests.dashboard.test_dashboard import UI, Watch, cookie, not_blank, token

APPS = Path(__file__).parent / "sfn_apps"


def _ms(value: float | None) -> str:
    """A duration as the pages print it (the ``ms`` filter)."""
    return "–" if value is None else f"{value:,.1f}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path):
    """orders and orders-flow, with one succeeded and one failed execution (the API's
    view of each kept on the server object)."""
    s = SkiffServer(tmp_path_factory.mktemp("home"), [APPS], envs_dir)
    try:
        runs = {}
        for label, amount in (("ok", 12), ("declined", -1)):
            started = s.http.post("/orders/checkout", json={"amount": amount})
            assert started.status_code == 200, started.text
            arn = started.json()["executionArn"]
            runs[label] = s.wait_for(lambda arn=arn: (lambda x: x if x["status"] != "RUNNING"
                                                      else None)(
                s.admin.get(f"/sfn/executions/{arn}").json()), f"the {label} execution")
        s.runs = runs  # type: ignore[attr-defined]
        yield s
    finally:
        s.stop()


def test_workflow_pages_in_the_browser(world: SkiffServer, browser, tmp_path: Path) -> None:  # noqa: ANN001
    s = world
    ok, bad = s.runs["ok"], s.runs["declined"]  # type: ignore[attr-defined]
    assert (ok["status"], bad["status"]) == ("SUCCEEDED", "FAILED")
    context = browser.new_context(base_url=s.url)
    page = context.new_page()
    watch = Watch(page)
    page.goto(f"{UI}/")
    page.fill("#token", token(s))
    page.press("#token", "Enter")
    page.wait_for_url(f"{s.url}{UI}/")
    page.click("nav a:text-is('Workflows')")
    page.wait_for_url(f"{s.url}{UI}/workflows")

    # the machine: its app and its trigger
    cells = page.locator('tr[data-machine="orders-flow"] td').all_inner_texts()
    assert cells[:3] == ["orders", "STANDARD", "http POST /checkout"], cells
    # each execution: status, start and the API's duration
    for run in (ok, bad):
        row = page.locator(f'tr[data-execution="{run["name"]}"]')
        cells = row.locator("td").all_inner_texts()
        assert cells[:2] == ["orders-flow", run["status"]], cells
        assert cells[3] == _ms(run["duration_ms"]) != "–", cells
    assert page.locator(f'tr[data-execution="{bad["name"]}"]').get_attribute("class") == "bad"
    page.screenshot(path=tmp_path / "workflows.png", full_page=True)
    not_blank(tmp_path / "workflows.png")

    # the succeeded one: every state's duration as the API has it, a bar each, the output
    page.click(f"a:text-is('{ok['name']}')")
    page.wait_for_selector("table.states")
    shown = [(r.locator("th").inner_text(), r.locator("td.duration").inner_text())
             for r in page.locator("table.states tbody tr").all()]
    assert shown == [(st["name"], _ms(st["duration_ms"])) for st in ok["states"]], shown
    assert [st["name"] for st in ok["states"]] == ["Prepare", "Charge", "Done"]
    widths = [float(w) for w in page.locator("table.states rect").evaluate_all(
        "rs => rs.map(r => r.getAttribute('width'))")]
    assert max(widths) == 100.0 and len(widths) == 3, widths
    assert page.locator("dd.duration").inner_text() == _ms(ok["duration_ms"])
    assert '"charged": 12' in page.locator("pre.io-output").inner_text()
    assert '"amount": 12' in page.locator("pre.io-input").inner_text()
    assert page.locator(".failure").count() == 0
    page.screenshot(path=tmp_path / "execution-ok.png", full_page=True)
    not_blank(tmp_path / "execution-ok.png")

    # the failed one: the error and cause, the state it failed in, no output
    page.go_back()
    page.click(f"a:text-is('{bad['name']}')")
    page.wait_for_selector("table.states")
    failure = page.locator(".failure").inner_text()
    assert bad["error"] and bad["error"] in failure and "cannot charge -1" in failure, failure
    charge = page.locator('tr[data-state="Charge"] td').all_inner_texts()
    assert charge[1] == "FAILED" and charge[3] == _ms(bad["states"][1]["duration_ms"]), charge
    assert page.locator("pre.io-output").count() == 0
    page.screenshot(path=tmp_path / "execution-failed.png", full_page=True)
    not_blank(tmp_path / "execution-failed.png")
    assert watch.errors == [], watch.errors
    context.close()


def test_an_unknown_execution_is_404_with_what_to_do(world: SkiffServer) -> None:
    with httpx.Client(base_url=world.url, headers=cookie(token(world))) as http:
        page = http.get(f"{UI}/workflows/executions/arn:aws:states:local:0:execution:x:y",
                        headers={"accept": "text/html"})
    assert page.status_code == 404
    assert "execution_not_found" in page.text and "skiff sfn ls" in page.text


@pytest.mark.parametrize(("trigger", "text"), [
    ({"http": {"path": "/checkout"}}, "http POST /checkout"),
    ({"http": {"path": "/x", "methods": ["GET", "PUT"]}}, "http GET,PUT /x"),
    ({"queue": "shop-inbox"}, "queue shop-inbox"),
    ({"event": {"type": ["shop.order"]}}, 'event {"type": ["shop.order"]}'),
])
def test_trigger_text(trigger: dict, text: str) -> None:
    assert views.trigger_text(trigger) == text


def test_state_bars_are_shares_of_the_longest() -> None:
    states = [{"duration_ms": 5.0}, {"duration_ms": 20.0}, {"duration_ms": None}]
    assert [s["share"] for s in views.state_bars(states)] == [25.0, 100.0, 0.0]
    assert views.state_bars([{"duration_ms": 0.0}])[0]["share"] == 0.0
    assert views.state_bars([]) == []
