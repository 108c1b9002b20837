"""The operator dashboard in a real browser over a real server with real traffic:
sign-in, charts that draw data, an invocation's logs, a rollback, a DLQ redrive,
phone width, the keyboard, no console errors; and the 401s without credentials."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from PIL import Image

from skiff.dashboard import views
from tests.conftest import SkiffServer

UI = "/_skiff/ui"
#: a rendered page has text, borders, tables, buttons: far more than a blank page's 1-2
MIN_COLOURS = 12


def not_blank(path: Path) -> int:
    colours = Image.open(path).convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colours) > MIN_COLOURS, f"{path.name} looks blank ({len(colours)} colours)"
    return len(colours)


def token(s: SkiffServer) -> str:
    return (s.home / "admin-token").read_text().strip()


def cookie(value: str) -> dict[str, str]:
    """The dashboard's cookie as a browser sends it (a header: httpx clients keep none)."""
    return {"cookie": f"skiff_ui_token={value}"}


class Watch:
    """Console errors and uncaught exceptions of every page the test opens."""

    def __init__(self, page) -> None:  # noqa: ANN001
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", lambda d: d.accept())  # hx-confirm on rollback and redrive


def signed_in(browser, s: SkiffServer, tmp_path: Path, **ctx):  # noqa: ANN001, ANN201
    context = browser.new_context(base_url=s.url, **ctx)
    page = context.new_page()
    watch = Watch(page)
    page.goto(f"{UI}/apps/web")  # not signed in: sent to the sign-in page, and back after
    assert page.url.startswith(f"{s.url}{UI}/signin?next=")
    page.screenshot(path=tmp_path / "signin.png", full_page=True)
    not_blank(tmp_path / "signin.png")
    page.fill("#token", token(s))
    page.press("#token", "Enter")
    page.wait_for_url(f"{s.url}{UI}/apps/web")
    cookie = next(c for c in context.cookies() if c["name"] == "skiff_ui_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == UI
    return context, page, watch


def test_pages_in_the_browser(server: SkiffServer, browser, tmp_path: Path) -> None:  # noqa: ANN001
    """Sign in, see the charts draw the app's real records, open an invocation's logs,
    roll back, redrive the DLQ; every page screenshotted and not blank; no console
    error anywhere."""
    s = server
    context, page, watch = signed_in(browser, s, tmp_path)

    # the charts: uPlot drew points from the records, in the series' colours
    page.wait_for_function("window.skiffCharts && window.skiffCharts.length === 2")
    for chart_id in ("latency", "rate"):
        # pixels in any of the chart's line colours (a line may lie on another: p95 on p99)
        drawn = page.evaluate("""([id, colours]) => {
            const u = window.skiffCharts.find(c => c.skiffId === id);
            const want = colours.map(c => [1, 3, 5].map(i => parseInt(c.slice(i, i + 2), 16)));
            const d = u.ctx.getImageData(0, 0, u.ctx.canvas.width, u.ctx.canvas.height).data;
            let pixels = 0;
            for (let i = 0; i < d.length; i += 4)
                if (d[i + 3] && want.some(w => d[i] === w[0] && d[i + 1] === w[1] && d[i + 2] === w[2]))
                    pixels++;
            const values = u.data.slice(1).flat().filter(v => v !== null && v > 0);
            return {points: values.length, pixels: pixels};
        }""", [chart_id, list(views.COLOURS.values())])
        assert drawn["points"] > 0 and drawn["pixels"] > 0, (chart_id, drawn)
    page.screenshot(path=tmp_path / "app.png", full_page=True)
    not_blank(tmp_path / "app.png")

    # an invocation's log lines (the handler prints its request id)
    rid = page.locator("table.invocations tbody tr").first.locator("code").inner_text()
    page.locator("table.invocations button.show-logs").first.click()
    page.wait_for_selector(f"#invocation-logs:has-text('for {rid}')")

    # rollback to the first revision: the UI says so and the app serves v1 again
    assert s.http.get("/web/").text == "hello v2"
    page.click(f"#revisions tr:has-text('{s.first_revision}') button.rollback")
    page.wait_for_selector(f"#revisions .notice:has-text('now serving {s.first_revision}')")
    assert s.wait_for(lambda: s.http.get("/web/").text == "hello v1", "the rollback")

    # the overview lists both apps, the one with errors first
    page.goto(f"{UI}/")
    names = page.locator("table.apps tbody th a").all_inner_texts()
    assert names[0] == "web" and "jobs" in names
    # cost per 1,000 requests, from GET /cost: a number for an app with requests
    web_cost = page.locator("table.apps tbody tr:has(th:has-text('web')) td").last.inner_text()
    assert float(web_cost) > 0
    page.screenshot(path=tmp_path / "overview.png", full_page=True)
    not_blank(tmp_path / "overview.png")

    # the DLQ: peek shows the dead letter; redrive moves it back, the third delivery works
    page.click("table.apps a:text-is('jobs')")
    page.wait_for_url(f"{s.url}{UI}/apps/jobs")
    row = page.locator("table.queues tr:has(th:has-text('jobs-dlq'))")
    row.locator("button.peek").click()
    page.wait_for_selector("table.messages td:has-text('job-1')")
    page.screenshot(path=tmp_path / "jobs.png", full_page=True)
    not_blank(tmp_path / "jobs.png")
    row.locator("button.redrive").click()
    page.wait_for_selector(".notice:has-text('moved 1 message(s)')")
    s.wait_for(lambda: any(r["status"] == 200 for r in s.admin.get(
        "/apps/jobs/invocations").json()) and _dlq_empty(s), "the redriven job to succeed")

    assert not watch.errors, watch.errors
    context.close()


def _dlq_empty(s: SkiffServer) -> bool:
    return all(q["visible"] == 0 for q in s.admin.get("/queues").json()
               if q["name"] == "jobs-dlq")


def test_phone_width_and_keyboard(server: SkiffServer, browser, tmp_path: Path) -> None:  # noqa: ANN001
    """At 390 px nothing but the tables' own boxes scrolls sideways, and Tab alone
    reaches the invocation logs and the rollback buttons."""
    context, page, watch = signed_in(browser, server, tmp_path,
                                     viewport={"width": 390, "height": 844}, is_mobile=True)
    page.wait_for_function("window.skiffCharts && window.skiffCharts.length === 2")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    width = page.evaluate("window.skiffCharts[0].width")
    assert 0 < width <= 390
    page.screenshot(path=tmp_path / "phone.png", full_page=True)
    not_blank(tmp_path / "phone.png")

    reached = set()
    for _ in range(200):
        page.keyboard.press("Tab")
        cls = page.evaluate("document.activeElement.className")
        reached.update(cls.split())
        if {"show-logs", "rollback"} <= reached:
            break
    assert {"show-logs", "rollback"} <= reached, reached
    page.keyboard.press("Shift+Tab")  # back from the rollback button to a logs button...
    while "show-logs" not in page.evaluate("document.activeElement.className"):
        page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # ...and open its logs from the keyboard
    page.wait_for_selector("#invocation-logs h3")
    assert not watch.errors, watch.errors
    context.close()


def test_api_docs_work_offline(server: SkiffServer, browser) -> None:  # noqa: ANN001
    """Swagger UI renders with every request off this server refused."""
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    watch = Watch(page)
    outside: list[str] = []

    def only_local(route) -> None:  # noqa: ANN001
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto("/_skiff/api/docs")
    page.wait_for_selector(".swagger-ui .info .title:has-text('Skiff admin API')")
    page.wait_for_selector(".opblock-summary-path:has-text('/_skiff/api/apps')")
    assert not outside, outside
    assert not watch.errors, watch.errors
    context.close()


def test_without_credentials(server: SkiffServer) -> None:
    """API clients get 401 saying how to sign in, browsers the sign-in page, htmx a
    redirect header; a wrong token is refused at sign-in."""
    with httpx.Client(base_url=server.url) as http:
        api = http.get(f"{UI}/")
        assert api.status_code == 401
        assert api.headers["www-authenticate"] == "Bearer"
        assert f"sign in at {UI}/signin" in api.json()["error"]["message"]
        page = http.get(f"{UI}/apps/web", headers={"accept": "text/html"})
        assert page.status_code == 303
        assert page.headers["location"] == f"{UI}/signin?next=%2F_skiff%2Fui%2Fapps%2Fweb"
        home = http.get("/_skiff/")
        assert home.status_code == 307 and home.headers["location"] == f"{UI}/"
        hx = http.get(f"{UI}/queues/jobs-dlq/messages", headers={"hx-request": "true"})
        assert hx.status_code == 401 and hx.headers["hx-redirect"].startswith(f"{UI}/signin")
        wrong = http.post(f"{UI}/signin", data={"token": "nope", "next": f"{UI}/"})
        assert wrong.status_code == 401 and "valid admin token" in wrong.text
        assert "set-cookie" not in wrong.headers
        stale = http.get(f"{UI}/", headers={"accept": "text/html",
                                            **cookie("revoked-or-wrong")})
        assert stale.status_code == 303 and "expired=1" in stale.headers["location"]
        assert 'skiff_ui_token=""' in stale.headers["set-cookie"]  # dropped
        # only dashboard pages after sign-in: no open redirect
        away = http.post(f"{UI}/signin", data={"token": token(server),
                                               "next": "https://evil.example/"})
        assert away.status_code == 303 and away.headers["location"] == f"{UI}/"


def test_service_tokens_and_roles(server: SkiffServer) -> None:
    """An skf_ token from governance signs in (the admin API's own authentication);
    a viewer sees pages but the API's roles refuse its rollback; actions need the
    htmx header (CSRF), even with a good cookie."""
    made = server.admin.post("/tokens", json={"user": "dash-viewer", "role": "viewer"})
    assert made.status_code == 201, made.text
    viewer = made.json()["token"]
    assert viewer.startswith("skf_")
    with httpx.Client(base_url=server.url) as http:
        signed = http.post(f"{UI}/signin", data={"token": viewer, "next": f"{UI}/apps/web"})
        assert signed.status_code == 303 and signed.headers["location"] == f"{UI}/apps/web"
        page = http.get(f"{UI}/apps/web", headers={"accept": "text/html", **cookie(viewer)})
        assert page.status_code == 200 and "dash-viewer (viewer)" in page.text
        assert "not-shown" not in page.text  # a secret's value never reaches a page
        assert "secret://dash-api-key" in page.text
        other = next(r["revision"] for r in server.admin.get("/apps/web/revisions").json()
                     if not r["current"])
        refused = http.post(f"{UI}/apps/web/rollback", data={"revision": other},
                            headers={"hx-request": "true", **cookie(viewer)})
        assert refused.status_code == 403 and "role_required" in refused.text
        no_header = http.post(f"{UI}/apps/web/rollback", data={"revision": ""},
                              headers=cookie(token(server)))
        assert no_header.status_code == 403 and "csrf_header_required" in no_header.text
        cross = http.post(f"{UI}/queues/jobs-dlq/redrive", headers={
            "hx-request": "true", "sec-fetch-site": "cross-site", **cookie(token(server))})
        assert cross.status_code == 403 and "cross_site_request" in cross.text


def test_app_output_is_escaped(server: SkiffServer) -> None:
    """What apps and their callers write (log lines here) is shown as text, never
    markup the browser would run."""
    attack = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    rid = server.http.get("/web/", params={"q": attack}).headers["x-skiff-request-id"]
    with httpx.Client(base_url=server.url, headers=cookie(token(server))) as http:
        logs = http.get(f"{UI}/apps/web/invocations/{rid}/logs",
                        headers={"hx-request": "true"})
    assert logs.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in logs.text
    assert "<script>" not in logs.text and "<img" not in logs.text


@pytest.mark.parametrize(("span", "step"), [(0, 1), (59, 1), (61, 2), (600, 10),
                                            (3600, 60), (10**7, 86400)])
def test_bucket_widths(span: float, step: int) -> None:
    """At most MAX_BUCKETS points per chart, on round steps."""
    assert views.bucket_width(span) == step


def test_series_and_overview_order() -> None:
    """Records become per-bucket counts and percentiles; the worst app comes first."""
    recs = [{"ts": 100.0 + i, "duration_ms": float(i), "status": 500 if i == 3 else 200,
             "cold": i == 0} for i in range(5)]
    out = views.series(recs)
    assert out["step"] == 1 and out["x"] == [100, 101, 102, 103, 104]
    rate = {s["label"]: s["values"] for s in out["charts"][1]["series"]}
    assert rate == {"requests": [1] * 5, "errors": [0, 0, 0, 1, 0], "cold": [1, 0, 0, 0, 0]}
    assert views.series([]) == {"step": 0, "x": [], "charts": []}
    apps = [{"name": "ok", "requests": 10, "errors": 0, "p95_ms": 900},
            {"name": "bad", "requests": 10, "errors": 2, "p95_ms": 1},
            {"name": "idle", "requests": 0, "errors": 0, "p95_ms": None}]
    report = {"rows": [{"app": "ok", "per_1k_requests": {"skiff": 0.0012}},
                       {"app": "idle", "per_1k_requests": None}]}
    rows = views.overview(apps, {"ok": recs}, now=104.0, costs=views.cost_per_1k(report))
    assert [r["name"] for r in rows] == ["bad", "ok", "idle"]
    assert [r["cost_per_1k"] for r in rows] == [None, 0.0012, None]
    assert rows[1]["rate_per_min"] == round(5 * 60 / views.RATE_WINDOW_S, 2)
    assert rows[0]["rate_per_min"] is None  # not measured (past RATE_APPS)
    assert re.fullmatch(r"#[0-9a-f]{6}", views.COLOURS["p95"])
