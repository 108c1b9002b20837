"""The dashboard's pages and actions (Starlette, Jinja2 templates, htmx fragments).

Sign-in: the form posts a token (the admin token, an ``skf_`` service token or an
OIDC ID token); it is checked by asking the admin API who it is, and kept in an
HttpOnly, SameSite=Strict cookie scoped to the dashboard's path. Each page then
calls the admin API with it (skiff.dashboard.client): one way in, one set of roles.

CSRF: every action (rollback, redrive, acknowledge, renew, approve, deny) is a POST that must carry htmx's
``HX-Request`` header. A cross-site form cannot set a custom header, and a
cross-site script cannot send one without a CORS preflight the dashboard never
grants; the SameSite=Strict cookie is not even sent from another site, and a
``Sec-Fetch-Site: cross-site`` request is refused outright. No token is embedded
in the pages, so there is none to leak.

Without credentials: a browser asking for a page is redirected to the sign-in
page; an htmx call gets 401 with ``HX-Redirect`` to it; any other client gets 401
in Skiff's error format saying how to sign in.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from skiff.dashboard import views
from skiff.dashboard.client import AdminClient
from skiff.errors import Forbidden, NotFound, PayloadTooLarge, SkiffError, Unauthorized

PREFIX = "/_skiff/ui"
COOKIE = "skiff_ui_token"
HERE = Path(__file__).parent
#: a sign-in or action form is a token and a name or two; anything bigger is not ours
FORM_LIMIT = 16 * 1024
#: log lines one drill-down reads per page of the logs API (its cap), and the pages it
#: reads at most: the API lists the oldest first, so the newest lines of a chatty app
#: take paging (bounded: retention bounds the lines an app keeps)
LOG_PAGE = 5000
LOG_PAGES = 20
#: egress log lines an app page shows (the newest)
EGRESS_LINES = 50
SIGN_IN_HELP = (f"sign in at {PREFIX}/signin with the admin token ($SKIFF_HOME/admin-token), "
                "a service token from `skiff tokens create`, or an OIDC ID token; API clients "
                "send `Authorization: Bearer <token>`")
#: scripts and styles from this origin only (no inline script: the chart data rides in
#: a JSON <script type="application/json"> block, which is not executed)
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def _templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=str(HERE / "templates"))
    t.env.globals.update(prefix=PREFIX, colours=views.COLOURS)
    t.env.filters["q"] = lambda s: quote(str(s), safe="")
    t.env.filters["when"] = _when
    t.env.filters["ms"] = lambda v: "–" if v is None else f"{v:,.1f}"
    t.env.filters["pct"] = lambda v: f"{100 * (v or 0):.1f} %"
    return t


def _when(ts: float | None) -> str:
    return "–" if not ts else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _days(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SkiffError(f"days is a whole number of days, not {value[:20]!r}",
                         code="bad_value", status=400) from None


def token_of(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.startswith("Bearer "):
        return auth.removeprefix("Bearer ").strip()
    return request.cookies.get(COOKIE, "")


def _htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _browser(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _safe_next(value: str | None) -> str:
    """Only a dashboard page: a sign-in link must not send anyone elsewhere."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") \
            and "\\" not in value:
        return value
    return PREFIX + "/"


async def _form(request: Request) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise PayloadTooLarge(f"a dashboard form is at most {FORM_LIMIT} bytes",
                                  code="payload_too_large")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def _not_cross_site(request: Request) -> None:
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise Forbidden("the dashboard takes no requests from other sites",
                        code="cross_site_request")


def _action(request: Request) -> None:
    """The CSRF rule of every action (see the module docstring)."""
    _not_cross_site(request)
    if not _htmx(request):
        raise Forbidden("dashboard actions are sent by its pages (the HX-Request header is "
                        "missing); use the admin API to script them", code="csrf_header_required")


class Dashboard:
    def __init__(self, admin: Any) -> None:
        self.api = AdminClient(admin)
        self.t = _templates()

    # -- rendering ---------------------------------------------------------------------
    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
        ctx.setdefault("fragment", _htmx(request))
        return self.t.TemplateResponse(request, name, ctx, status_code=status)

    async def error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SkiffError)
        given = bool(token_of(request))
        if isinstance(exc, Unauthorized):
            # back to the page the caller was on (htmx says which; a GET is that page)
            here = urlsplit(request.headers.get("hx-current-url") or str(request.url))
            path = here.path + (f"?{here.query}" if here.query else "")
            signin = f"{PREFIX}/signin?next={quote(_safe_next(path), safe='')}"
            if given:
                signin += "&expired=1"
            if _htmx(request):
                resp: Response = Response(status_code=401, headers={"hx-redirect": signin})
            elif _browser(request) and request.method == "GET":
                resp = RedirectResponse(signin, status_code=303)
            else:
                resp = JSONResponse({"error": {"code": exc.code, "message": (
                    f"{exc.message}; {SIGN_IN_HELP}" if given else SIGN_IN_HELP)}},
                    status_code=401, headers={"www-authenticate": "Bearer"})
            if request.cookies.get(COOKIE):  # it no longer works: drop it
                resp.delete_cookie(COOKIE, path=PREFIX)
            return resp
        if _htmx(request) or _browser(request):
            return self.render(request, "error.html", exc.status, error=exc)
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    # -- sign-in -----------------------------------------------------------------------
    async def signin_page(self, request: Request) -> Response:
        return self.render(request, "signin.html", next=_safe_next(request.query_params.get(
            "next")), expired="expired" in request.query_params, message=None)

    async def signin(self, request: Request) -> Response:
        _not_cross_site(request)
        form = await _form(request)
        token, nxt = form.get("token", "").strip(), _safe_next(form.get("next"))
        try:
            await self.api.get(token, "/whoami")
        except Unauthorized as exc:
            return self.render(request, "signin.html", 401, next=nxt, expired=False,
                               message=exc.message)
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(COOKIE, token, path=PREFIX, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
        return resp

    async def signout(self, request: Request) -> Response:
        _not_cross_site(request)
        resp = RedirectResponse(f"{PREFIX}/signin", status_code=303)
        resp.delete_cookie(COOKIE, path=PREFIX)
        return resp

    # -- pages -------------------------------------------------------------------------
    async def _common(self, token: str) -> dict:
        me, health = await asyncio.gather(self.api.get(token, "/whoami"),
                                          self.api.get("", "/health"))
        return {"me": me, "health": health}

    async def overview(self, request: Request) -> Response:
        token = token_of(request)
        common = await self._common(token)
        apps = sorted(await self.api.get(token, "/apps"), key=views.worst_first)
        measured = apps[:views.RATE_APPS]
        recs = await asyncio.gather(*(self.api.get(token, f"/apps/{quote(a['name'], safe='')}"
                                                   "/invocations", limit=views.RATE_RECORDS)
                                      for a in measured))
        cost = await self.api.get(token, "/cost", since=f"{views.COST_DAYS}d")
        rows = views.overview(apps, {a["name"]: r for a, r in zip(measured, recs, strict=True)},
                              costs=views.cost_per_1k(cost))
        return self.render(request, "overview.html", rows=rows, currency=cost["currency"],
                           cost_days=views.COST_DAYS, **common)

    async def app_page(self, request: Request) -> Response:
        token, name = token_of(request), request.path_params["name"]
        q = quote(name, safe="")
        common = await self._common(token)
        app, revisions, records, queues, secrets, egress = await asyncio.gather(
            self.api.get(token, f"/apps/{q}"), self.api.get(token, f"/apps/{q}/revisions"),
            self.api.get(token, f"/apps/{q}/invocations", limit=views.RECORDS),
            self.api.get(token, "/queues"), self.api.get(token, "/secrets"),
            self._tail_logs(token, name, stream="egress", keep=EGRESS_LINES))
        manifest = app.get("manifest") or {}
        return self.render(
            request, "app.html", app=app, revisions=revisions, records=records[:50],
            chart=views.series(records),
            queues=views.app_queues(manifest, name, queues),
            secrets=views.app_secrets(manifest, secrets), egress=egress[::-1],
            manifest=yaml.safe_dump(manifest, sort_keys=False), notice=None, **common)

    async def _tail_logs(self, token: str, name: str, *, stream: str | None = None,
                         keep: int = LOG_PAGE, request_id: str | None = None) -> list[dict]:
        """The newest ``keep`` lines (of one request, when given), oldest first."""
        out: list[dict] = []
        after = 0
        for _ in range(LOG_PAGES):
            params: dict[str, Any] = {"after": after, "limit": LOG_PAGE}
            if stream:
                params["stream"] = stream
            page = await self.api.get(token, f"/apps/{quote(name, safe='')}/logs", **params)
            out.extend(r for r in page if request_id is None or r["request_id"] == request_id)
            out = out[-keep:]
            if len(page) < LOG_PAGE:
                break
            after = page[-1]["seq"]
        return out

    async def invocation_logs(self, request: Request) -> Response:
        token, name = token_of(request), request.path_params["name"]
        rid = request.path_params["rid"]
        lines = await self._tail_logs(token, name, request_id=rid)
        return self.render(request, "logs.html", app={"name": name}, rid=rid, lines=lines)

    async def alerts_page(self, request: Request) -> Response:
        token = token_of(request)
        common = await self._common(token)
        found, silences, history = await asyncio.gather(
            self.api.get(token, "/alerts"), self.api.get(token, "/alerts/silences"),
            self.api.get(token, "/alerts/history", limit=50))
        return self.render(request, "alerts.html", alerts=found["alerts"],
                           channels=found["channels"], silences=silences, history=history,
                           notice=None, **common)

    async def inventory_page(self, request: Request) -> Response:
        token = token_of(request)
        common = await self._common(token)
        found, archives = await asyncio.gather(self.api.get(token, "/inventory"),
                                               self.api.get(token, "/archives"))
        return self.render(request, "inventory.html", apps=views.inventory_rows(found["apps"]),
                           window_s=found["window_s"], undeclared=found["undeclared_egress"],
                           archives=views.archives_order(archives),
                           cost_days=views.COST_DAYS, notice=None, problem=None, **common)

    async def approvals_page(self, request: Request) -> Response:
        token = token_of(request)
        common = await self._common(token)
        pending = await self.api.get(token, "/approvals", state="pending")
        return self.render(request, "approvals.html", approvals=pending, notice=None,
                           problem=None, **common)

    async def budgets_page(self, request: Request) -> Response:
        token = token_of(request)
        common = await self._common(token)
        found = await self.api.get(token, "/budgets")
        return self.render(request, "budgets.html", budgets=views.budgets_order(found),
                           **common)

    async def workflows_page(self, request: Request) -> Response:
        token = token_of(request)
        common = await self._common(token)
        machines, executions = await asyncio.gather(
            self.api.get(token, "/sfn/machines"),
            self.api.get(token, "/sfn/executions", limit=views.EXECUTIONS))
        return self.render(request, "workflows.html", machines=machines,
                           executions=executions, trigger_text=views.trigger_text, **common)

    async def execution_page(self, request: Request) -> Response:
        token, arn = token_of(request), request.path_params["arn"]
        common = await self._common(token)
        ex = await self.api.get(token, f"/sfn/executions/{quote(arn, safe='')}")
        return self.render(request, "execution.html", ex=ex, states=views.state_bars(
            ex["states"]), input=views.pretty(ex["input"]), output=views.pretty(ex["output"]),
            **common)

    # -- actions -----------------------------------------------------------------------
    async def renew(self, request: Request) -> Response:
        """Renew from the inventory: a refusal (not the owner, too many days) is shown
        above the table, which is redrawn either way."""
        _action(request)
        token, name = token_of(request), request.path_params["name"]
        form = await _form(request)
        notice, problem = None, None
        try:
            days = _days(form.get("days", ""))
            done = await self.api.call(token, "POST", f"/apps/{quote(name, safe='')}/renew",
                                       json={"days": days, "reason": form.get("reason", "")})
            notice = f"renewed {name} for {days} day(s): it expires {_when(done['expires'])} UTC"
        except Unauthorized:
            raise
        except SkiffError as exc:
            problem = exc
        found = await self.api.get(token, "/inventory")
        return self.render(request, "inventory_rows.html", problem.status if problem else 200,
                           fragment=True, apps=views.inventory_rows(found["apps"]),
                           notice=notice, problem=problem)

    async def decide(self, request: Request) -> Response:
        """Approve or deny from the approvals page: the API's refusal (a self-approval,
        a request decided meanwhile) is shown above the redrawn list."""
        _action(request)
        token, rid = token_of(request), request.path_params["id"]
        verb = request.path_params["verb"]
        if verb not in ("approve", "deny"):
            raise NotFound(f"approvals are approved or denied, not {verb[:20]!r}",
                           code="not_found")
        reason = (await _form(request)).get("reason", "").strip()
        notice, problem = None, None
        try:
            done = await self.api.call(token, "POST",
                                       f"/approvals/{quote(rid, safe='')}/{verb}",
                                       json={"reason": reason})
            notice = f"{done['state']} {rid} ({done['app']}) as {done['decided_by']}"
        except Unauthorized:
            raise
        except SkiffError as exc:
            problem = exc
        pending = await self.api.get(token, "/approvals", state="pending")
        return self.render(request, "approval_rows.html", problem.status if problem else 200,
                           fragment=True, approvals=pending, notice=notice, problem=problem)

    async def ack(self, request: Request) -> Response:
        _action(request)
        token, alert = token_of(request), request.path_params["alert"]
        done = await self.api.call(token, "POST", f"/alerts/{quote(alert, safe='')}/ack")
        found = await self.api.get(token, "/alerts")
        return self.render(request, "alert_rows.html", fragment=True, alerts=found["alerts"],
                           notice=f"acknowledged {done['id']} as {done['acked_by']}")

    async def rollback(self, request: Request) -> Response:
        _action(request)
        token, name = token_of(request), request.path_params["name"]
        q = quote(name, safe="")
        revision = (await _form(request)).get("revision") or None
        done = await self.api.call(token, "POST", f"/apps/{q}/rollback",
                                   json={"revision": revision})
        revisions = await self.api.get(token, f"/apps/{q}/revisions")
        now = next((r["revision"] for r in revisions if r["current"]), revision)
        return self.render(request, "revisions.html", fragment=True, app={"name": name},
                           revisions=revisions, notice=f"rolled back: now serving {now}",
                           result=done)

    async def messages(self, request: Request) -> Response:
        token, queue = token_of(request), request.path_params["queue"]
        msgs = await self.api.get(token, f"/queues/{quote(queue, safe='')}/messages", limit=10)
        return self.render(request, "messages.html", fragment=True, queue=queue,
                           messages=msgs, notice=None)

    async def redrive(self, request: Request) -> Response:
        _action(request)
        token, queue = token_of(request), request.path_params["queue"]
        q = quote(queue, safe="")
        moved = await self.api.call(token, "POST", f"/queues/{q}/redrive")
        msgs = await self.api.get(token, f"/queues/{q}/messages", limit=10)
        return self.render(request, "messages.html", fragment=True, queue=queue,
                           messages=msgs,
                           notice=f"moved {moved['moved']} message(s) back to their queue")


class _Headers:
    """Security headers on every dashboard answer; pages are never cached (they carry
    what the signed-in caller may see)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        static = scope.get("path", "").startswith(f"{PREFIX}/static/")

        async def send_with(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                headers = list(msg.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"x-frame-options", b"DENY"), (b"referrer-policy", b"same-origin")]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                msg = msg | {"headers": headers}
            await send(msg)

        await self.app(scope, receive, send_with)


def build_dashboard(admin: Any) -> Any:
    """The dashboard's ASGI app (paths under ``/_skiff/ui``), calling ``admin``."""
    d = Dashboard(admin)
    routes = [
        Route("/", d.overview), Route("/signin", d.signin_page),
        Route("/signin", d.signin, methods=["POST"]),
        Route("/signout", d.signout, methods=["POST"]),
        Route("/apps/{name}", d.app_page),
        Route("/apps/{name}/invocations/{rid}/logs", d.invocation_logs),
        Route("/apps/{name}/rollback", d.rollback, methods=["POST"]),
        Route("/alerts", d.alerts_page),
        Route("/alerts/{alert}/ack", d.ack, methods=["POST"]),
        Route("/inventory", d.inventory_page),
        Route("/apps/{name}/renew", d.renew, methods=["POST"]),
        Route("/approvals", d.approvals_page),
        Route("/approvals/{id}/{verb}", d.decide, methods=["POST"]),
        Route("/budgets", d.budgets_page),
        Route("/workflows", d.workflows_page),
        Route("/workflows/executions/{arn}", d.execution_page),
        Route("/queues/{queue}/messages", d.messages),
        Route("/queues/{queue}/redrive", d.redrive, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=[Mount(PREFIX, routes=routes)],
                    exception_handlers={SkiffError: d.error})
    return _Headers(app)


def mount(admin: Any) -> Any:
    """The admin API with the dashboard beside it: ``/_skiff/ui/...`` is the
    dashboard, ``/_skiff/`` redirects to it, everything else is the admin's."""
    ui = build_dashboard(admin)
    home = RedirectResponse(PREFIX + "/", status_code=307)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if path == PREFIX or path.startswith(PREFIX + "/"):
            await ui(scope, receive, send)
        elif path == "/_skiff/" and scope["type"] == "http":
            await home(scope, receive, send)
        else:
            await admin(scope, receive, send)

    return app
