"""The admin API: JSON over HTTP under /_skiff/api, token-protected, described
by OpenAPI at /_skiff/api/openapi.json. The CLI is a thin client of it.

Every route but health, schema and the docs needs a caller (see
skiff.governance.access) and a role: viewer reads; developer deploys, rolls
back, deletes and operates the apps it owns (the Deployer asks the Governor);
operator everything about every app, secrets, queues and route grants; admin
identities and policies."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

import skiff
from skiff import ipc as p
from skiff.errors import InvocationError, NotFound, PayloadTooLarge, SkiffError, Unauthorized
from skiff.gateway import sfn, upload
from skiff.gateway.app import app_response
from skiff.gateway.facade import Facade
from skiff.governance import Principal, Role
from skiff.governance.access import UNAUTHORIZED
from skiff.manifest import json_schema
from skiff.observe.logview import LEVELS, at_least, line_level, normal_level, parse_since
from skiff.scheduler import Invocation

log = logging.getLogger(__name__)
PREFIX = "/_skiff/api"
#: Swagger UI's files, vendored (gateway/swagger/README.md) so the docs page works offline
SWAGGER = Path(__file__).parent / "swagger"
DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
               "favicon-32x32.png": "image/png"}
_WRITE_BATCH = 1024 * 1024  # upload bytes gathered before one write, off the loop


def _json(data: bytes, what: str, code: str) -> Any:
    """JSON of a request body; any input that is not (bad UTF-8, 100,000 levels of
    nesting that exhaust the parser's recursion) is the client's 400."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise SkiffError(f"{what} must be JSON (nested at most a few hundred levels)",
                         code=code, status=400) from None


class MessageBody(BaseModel):
    body: Any
    attributes: dict[str, str] | None = None
    delay: float = 0.0


class SecretBody(BaseModel):
    value: str


class RollbackBody(BaseModel):
    revision: str | None = None


class TokenBody(BaseModel):
    user: str
    role: str
    expires_in: float | None = None  # seconds


class UserBody(BaseModel):
    name: str
    groups: list[str] = []


class GroupBody(BaseModel):
    name: str


class PolicyBody(BaseModel):
    text: str  # YAML: one policy or a list


class RenewBody(BaseModel):
    days: int
    reason: str


class DecisionBody(BaseModel):
    reason: str = ""


class TickBody(BaseModel):
    now: float | None = None  # unix time; default: now


class BudgetBody(BaseModel):
    owner: Any = None  # user:NAME or group:NAME
    metric: Any = None  # cost, gb_s or requests
    limit: Any = None  # a month's worth
    action: Any = "throttle"  # throttle, scale-to-zero or notify
class SilenceBody(BaseModel):
    matchers: dict[str, str]  # rule, subject, severity: a value or a glob
    duration: float | None = None  # seconds from now ...
    until: float | None = None  # ... or the end as unix time
    comment: str = ""


class RouteGrantBody(BaseModel):
    app: str
    host: str | None = None
    path: str = "/"


_TRIGGER = {"http": "http", "invoke": "other", "queue": "pubsub", "event": "pubsub",
            "schedule": "timer"}


def _otel(r: dict) -> dict:
    """The record under OpenTelemetry's FaaS semantic-convention names."""
    return {"faas.invocation_id": r["id"], "faas.name": r["app"], "faas.version": r["revision"],
            "faas.instance": r["instance"], "faas.coldstart": r["cold"],
            "faas.trigger": _TRIGGER.get(r["trigger"], "other"),
            "faas.max_memory": r["memory_mb"] * 1024 * 1024,
            "http.response.status_code": r["status"]}


class AdminGuard:
    """In front of the FastAPI app: the token is checked before anything of the
    request is read or parsed (FastAPI reads and validates a JSON body before it
    runs the auth dependency), and a body is read only up to its limit."""

    def __init__(self, api: FastAPI, token: str, platform: Facade) -> None:
        self.api = api
        self.platform = platform
        self._token = token.encode()
        self._access = platform.access
        self._public = {f"{PREFIX}/{p}" for p in ("health", "schema", "openapi.json", "docs",
                                                   *(f"docs/assets/{a}" for a in DOCS_ASSETS))}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        path = scope["path"]
        given = length = b""
        for k, v in scope["headers"]:
            if k == b"authorization":
                given = v.removeprefix(b"Bearer ").strip()
            elif k == b"content-length":
                length = v
        if path not in self._public:
            try:
                scope["skiff.principal"] = await self._principal(given)
            except SkiffError as exc:
                await self._refuse(send, exc)
                return
            except Exception:  # a bug or a database down: still no way in, and a clear answer
                log.exception("authenticating an admin API call failed")
                await self._refuse(send, SkiffError(
                    "the caller could not be authenticated (internal error); the server log "
                    "has the details", code="internal_error", status=500))
                return
        config = self.platform.config
        deploy = scope["method"] == "POST" and path == f"{PREFIX}/apps"
        limit = config.max_app_bytes if deploy else config.max_body_bytes
        too_large = PayloadTooLarge(
            f"the request body is over {limit} bytes "
            f"({'SKIFF_MAX_APP_BYTES' if deploy else 'SKIFF_MAX_BODY_BYTES'})",
            code="app_too_large" if deploy else "payload_too_large")
        if length.isdigit() and int(length) > limit:
            await self._refuse(send, too_large)
            return
        received = 0

        async def capped() -> dict:
            nonlocal received
            msg = await receive()
            received += len(msg.get("body", b""))
            if received > limit:
                raise too_large
            return msg

        await self.api(scope, capped, send)

    async def _principal(self, given: bytes) -> Principal:
        if not given:
            raise Unauthorized(UNAUTHORIZED)
        if secrets.compare_digest(given, self._token):
            from skiff.governance import BOOTSTRAP

            return BOOTSTRAP
        token = given.decode("latin-1")
        if self._access.needs_network(token):  # the issuer's keys may be fetched: off the loop
            return await asyncio.to_thread(self._access.authenticate, token)
        return self._access.authenticate(token)

    async def _refuse(self, send: Any, exc: SkiffError) -> None:
        rid = self.platform.new_request_id()
        body = exc.to_dict()
        body["error"]["request_id"] = rid
        headers = [(b"content-type", b"application/json"), (b"x-skiff-request-id", rid.encode())]
        if exc.status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def caller(request: Request) -> Principal:
    """The caller the guard authenticated before anything of the request was read."""
    principal = request.scope.get("skiff.principal")
    if principal is None:
        raise Unauthorized(UNAUTHORIZED)
    return principal


Caller = Annotated[Principal, Depends(caller)]


def build_admin(platform: Facade, token: str,
                edge_stats: Callable[[], dict] | None = None) -> AdminGuard:
    api = FastAPI(title="Skiff admin API", version=skiff.__version__,
                  openapi_url=f"{PREFIX}/openapi.json", docs_url=None, redoc_url=None)

    @api.get(f"{PREFIX}/docs", include_in_schema=False)
    async def docs() -> Response:
        assets = f"{PREFIX}/docs/assets"
        return get_swagger_ui_html(openapi_url=f"{PREFIX}/openapi.json",
                                   title="Skiff admin API",
                                   swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{assets}/swagger-ui.css",
                                   swagger_favicon_url=f"{assets}/favicon-32x32.png")

    @api.get(f"{PREFIX}/docs/assets/{{name}}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if name not in DOCS_ASSETS:
            raise NotFound(f"no docs asset {name!r}")
        return FileResponse(SWAGGER / name, media_type=DOCS_ASSETS[name],
                            headers={"cache-control": "public, max-age=86400"})
    def error(exc: SkiffError) -> JSONResponse:
        rid = platform.new_request_id()
        body = exc.to_dict()
        body["error"]["request_id"] = rid
        headers = {"x-skiff-request-id": rid}
        if exc.details.get("retry_after") is not None:
            headers["retry-after"] = str(exc.details["retry_after"])
        return JSONResponse(body, status_code=exc.status, headers=headers)

    @api.exception_handler(SkiffError)
    async def skiff_error(request: Request, exc: SkiffError) -> JSONResponse:
        return error(exc)

    @api.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        return error(SkiffError(f"the request is not valid: {problems}", code="bad_request",
                                status=400))

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad_request", 404: "not_found",
                405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = (f"no admin endpoint {request.method} {request.url.path}; see "
                   f"{PREFIX}/docs" if exc.status_code in (404, 405) else str(exc.detail))
        return error(SkiffError(message, code=code, status=exc.status_code))

    @api.exception_handler(RecursionError)
    async def too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        # a parser or validator ran out of stack on nested input: the input's fault
        return error(SkiffError("the request is nested too deeply", code="bad_request",
                                status=400))

    @api.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        # still a bug to fix (uvicorn logs the traceback), but in Skiff's error format
        return error(SkiffError(f"internal error ({type(exc).__name__}); the server log "
                                "has the details", code="internal_error", status=500))

    def role(needed: Role, doing: str) -> Callable[[Request], Principal]:
        def check(request: Request) -> Principal:
            principal = caller(request)
            principal.require(needed, doing)
            return principal
        return check

    sfn.mount(api, lambda: platform.sfn, caller)  # the Step Functions JSON protocol
    protected = [Depends(role(Role.viewer, "reading the admin API"))]
    operating = [Depends(role(Role.operator, "this operation"))]
    admin_only = [Depends(role(Role.admin, "managing identities"))]

    def manages(principal: Principal, name: str, doing: str) -> None:
        """Per-app operations: its owners (developer) or an operator."""
        governor = platform.governor
        governor.may_remove(principal, platform.app_manifest(name), doing)

    @api.get(f"{PREFIX}/health")
    async def health(response: Response) -> dict:
        node = platform.config.node_name
        response.headers["x-skiff-node"] = node  # a load balancer's check tells nodes apart
        return {"status": "ok", "version": skiff.__version__, "node": node,
                "apps": len(platform.app_names()),
                "uptime_s": round(time.time() - platform.started, 1)}

    @api.get(f"{PREFIX}/schema")
    async def schema() -> dict:
        return json_schema()

    @api.get(f"{PREFIX}/apps", dependencies=protected)
    async def list_apps() -> list[dict]:
        return [platform.describe(name) for name in platform.app_names()]

    @api.get(f"{PREFIX}/apps/{{name}}", dependencies=protected)
    async def get_app(name: str) -> dict:
        return platform.describe(name, manifest=True)

    @api.post(f"{PREFIX}/apps", status_code=201, dependencies=protected,
              openapi_extra={"requestBody": {"content": {"application/gzip": {
                  "schema": {"type": "string", "format": "binary"}}}, "required": True}})
    async def deploy(request: Request, principal: Caller, response: Response,
                     allow_secret_scan_findings: str | None = None,
                     progress: bool = False) -> Any:
        """Upload an app directory as a .tar.gz; creates an immutable revision and serves it.
        ``allow_secret_scan_findings`` (a reason, recorded) lets a deploy through the scan.
        ``progress``: answer ``application/x-ndjson``, a ``{"stage": ...}`` line per stage
        and then ``{"result": ...}`` or ``{"error": ...}``, for a CLI to show as it goes."""
        principal.require(Role.developer, "deploying an app")
        config = platform.config
        limit = config.max_app_bytes  # compressed, it is no bigger than expanded
        where = upload.uploads_dir(config.home)
        tmp = Path(tempfile.mkdtemp(dir=where, prefix=f"{os.getpid()}-"))
        streaming = False
        try:
            archive = tmp / "upload.tar.gz"
            received = 0
            out = await asyncio.to_thread(open, archive, "wb")
            with out:
                batch = bytearray()
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > limit:
                        raise PayloadTooLarge(f"the upload is over {limit} bytes "
                                              "(SKIFF_MAX_APP_BYTES)", code="app_too_large")
                    batch += chunk
                    if len(batch) >= _WRITE_BATCH:
                        await asyncio.to_thread(out.write, bytes(batch))
                        batch.clear()
                await asyncio.to_thread(out.write, bytes(batch))
            app_dir = tmp / "app"
            await asyncio.to_thread(upload.extract, archive, app_dir,
                                    max_bytes=config.max_app_bytes,
                                    max_files=config.max_app_files)
            archive.unlink()
            if progress:
                streaming = True
                return StreamingResponse(_deploy_stages(app_dir, tmp, principal,
                                                        allow_secret_scan_findings),
                                         media_type="application/x-ndjson")
            try:
                out = await platform.deploy(app_dir, actor=principal,
                                            allow_secret_findings=allow_secret_scan_findings)
            except SkiffError as exc:
                raise upload.relative_paths(exc, app_dir) from None
            if out.get("pending"):  # held for an operator's approval; the old revision serves
                response.status_code = 202
            return out
        finally:
            if not streaming:  # else the stream removes it when the deploy is done
                await asyncio.to_thread(shutil.rmtree, tmp, True)

    async def _deploy_stages(app_dir: Path, tmp: Path, principal: Principal,
                             allow: str | None) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        stages: asyncio.Queue[str] = asyncio.Queue()
        task = asyncio.ensure_future(platform.deploy(
            app_dir, actor=principal, allow_secret_findings=allow,
            progress=lambda stage: loop.call_soon_threadsafe(stages.put_nowait, stage)))
        try:
            while not task.done() or not stages.empty():
                getter = asyncio.ensure_future(stages.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield json.dumps({"stage": getter.result()}).encode() + b"\n"
                else:
                    getter.cancel()
            try:
                yield json.dumps({"result": task.result()}).encode() + b"\n"
            except SkiffError as exc:
                yield json.dumps({**upload.relative_paths(exc, app_dir).to_dict(),
                                  "status": exc.status}).encode() + b"\n"
        finally:
            if not task.done():  # the client went away: the deploy still finishes
                await asyncio.shield(task)
            await asyncio.to_thread(shutil.rmtree, tmp, True)

    @api.delete(f"{PREFIX}/apps/{{name}}", dependencies=protected)
    async def delete_app(name: str, principal: Caller, purge: bool = False) -> dict:
        """Archive the app (code, revisions, KV items, pending messages, secret refs),
        then delete it with its data, queues, revisions and route grants; its routes
        answer 410 until `skiff restore`. ``purge``: keep no archive. Its invocation
        records and logs stay for audit."""
        return await platform.delete(name, actor=principal, purge=purge)

    @api.post(f"{PREFIX}/apps/{{name}}/restore", dependencies=protected)
    async def restore_app(name: str, principal: Caller) -> dict:
        """Bring an archived (expired or removed) app back as it was, through the
        deploy's policy check; 409 name_taken when another app has the name now."""
        principal.require(Role.developer, "restoring an app")
        return await platform.restore(name, actor=principal)

    @api.post(f"{PREFIX}/apps/{{name}}/renew", dependencies=protected)
    async def renew_app(name: str, body: RenewBody, principal: Caller) -> dict:
        """Let the app live ``days`` more from now (at most SKIFF_POLICY_MAX_TTL_DAYS)."""
        return await platform.renew(name, body.days, body.reason, actor=principal)

    @api.get(f"{PREFIX}/apps/{{name}}/lifecycle", dependencies=protected)
    async def app_lifecycle(name: str) -> dict:
        """Its TTL: since when it counts, when it expires, the reminders sent."""
        return await asyncio.to_thread(platform.lifecycle_status, name)

    @api.get(f"{PREFIX}/inventory", dependencies=protected)
    async def inventory() -> dict:
        """Every app and draft: owner, template, last deploy and by whom, TTL left,
        scopes, policy status, requests and errors of the last hour, cost; and the
        egress hosts apps tried that no app declares."""
        return await platform.inventory()

    @api.post(f"{PREFIX}/drafts", status_code=201, dependencies=protected)
    async def register_drafts(request: Request, principal: Caller) -> list[dict]:
        """Record finds of `skiff discover` (a JSON list) as drafts for their owners
        to claim; registered apps are skipped."""
        finds = _json(await request.body(), "the finds", "bad_drafts")
        return await platform.register_drafts(finds, actor=principal)

    @api.post(f"{PREFIX}/drafts/{{name}}/claim", dependencies=protected)
    async def claim_draft(name: str, principal: Caller) -> dict:
        """The draft becomes the caller's (a developer's); their deploy makes it an app."""
        return await platform.claim(name, actor=principal)

    @api.get(f"{PREFIX}/approvals", dependencies=protected)
    async def approvals(state: str | None = "pending") -> list[dict]:
        """Deploys held for asking more scopes than their app had (``state``: pending,
        approved, denied; empty for all)."""
        return await asyncio.to_thread(platform.approval_list, state or None)

    @api.post(f"{PREFIX}/approvals/{{approval_id}}/approve", dependencies=operating)
    async def approve(approval_id: str, principal: Caller,
                      body: DecisionBody | None = None) -> dict:
        """Approve a held deploy (not your own): it is deployed now, and its scopes need
        no approval again for that app."""
        return await platform.decide(approval_id, approve=True,
                                     reason=body.reason if body else "", actor=principal)

    @api.post(f"{PREFIX}/approvals/{{approval_id}}/deny", dependencies=operating)
    async def deny(approval_id: str, body: DecisionBody, principal: Caller) -> dict:
        return await platform.decide(approval_id, approve=False, reason=body.reason,
                                     actor=principal)

    @api.get(f"{PREFIX}/archives", dependencies=protected)
    async def archives() -> list[dict]:
        """Archived apps (expired or removed) that `skiff restore` can bring back."""
        return await asyncio.to_thread(platform.archives)

    @api.get(f"{PREFIX}/lifecycle/outbox", dependencies=operating)
    async def outbox() -> list[dict]:
        """Reminders and notices for webhooks and e-mail, delivered or still retried."""
        return await asyncio.to_thread(platform.outbox)

    @api.post(f"{PREFIX}/lifecycle/tick",
              dependencies=[Depends(role(Role.admin, "running the lifecycle sweep"))])
    async def lifecycle_tick(principal: Caller, body: TickBody | None = None) -> dict:
        """Run the TTL sweep now (the server runs it every minute): reminders, expiry,
        notifications. ``now`` (unix time) sweeps as if it were then: what expires at
        that time is archived (for drills and tests; admin only, and audited)."""
        now = body.now if body is not None and body.now is not None else time.time()
        out = await platform.lifecycle_tick(now)
        platform.governor.record(principal, "lifecycle.sweep", "lifecycle", "allowed",
                                 f"at {now:.0f}: {len(out['reminded'])} reminder(s), "
                                 f"{len(out['archived'])} archived")
        return out

    @api.get(f"{PREFIX}/cost", dependencies=protected)
    async def cost(by: str = "app", since: str | None = None, until: str | None = None) -> dict:
        """What apps cost on Skiff (the machine's core-hour and GiB-hour prices) and what
        the same invocations would cost on Lambda and Cloud Run, per app or per owner:
        totals, per day, per 1,000 requests, GB-s. ``since``: 30d, epoch seconds or ISO
        8601 (default: the start of this month, UTC); ``until``: default now."""
        from skiff.governance.budgets import period

        now = time.time()
        try:
            start = parse_since(since, now) if since else period(now)[0]
            end = parse_since(until, now) if until else now
        except ValueError as exc:
            raise SkiffError(str(exc), code="bad_request", status=400) from None
        if end < start:
            raise SkiffError("until is before since", code="bad_request", status=400)
        return await platform.cost(by, start, end)

    @api.get(f"{PREFIX}/budgets", dependencies=protected)
    async def budgets() -> list[dict]:
        """Every budget with this month's use, percent, state and the action in force."""
        return await platform.budgets()

    @api.put(f"{PREFIX}/budgets", dependencies=operating)
    async def set_budget(body: BudgetBody, principal: Caller) -> dict:
        """Add or replace the budget of an owner for a metric (its notices start over)."""
        return await platform.budget_set(body.model_dump(), actor=principal)

    @api.delete(f"{PREFIX}/budgets/{{owner}}", dependencies=operating)
    async def remove_budget(owner: str, principal: Caller, metric: str | None = None) -> dict:
        """Remove the owner's budget of ``metric`` (all of the owner's without one)."""
        return await platform.budget_rm(owner, metric, actor=principal)
    # -- SLOs and alerts -----------------------------------------------------------------
    @api.get(f"{PREFIX}/alerts", dependencies=protected)
    async def alerts(state: str | None = None) -> dict:
        """Alerts (``state``: firing or resolved; empty for both), firing first, each with
        what became of its notices; and each notification channel's health."""
        if state not in (None, "", "firing", "resolved"):
            raise SkiffError("state is firing, resolved or empty for both", code="bad_value",
                             status=400)
        alerting, now = platform.alerting, time.time()
        rows = await asyncio.to_thread(alerting.view, now, state or None)
        channels = await asyncio.to_thread(alerting.channels)
        return {"alerts": rows, "channels": channels}

    @api.post(f"{PREFIX}/alerts/evaluate",
              dependencies=[Depends(role(Role.admin, "running the alert evaluation"))])
    async def alerts_evaluate(principal: Caller, body: TickBody | None = None) -> dict:
        """Evaluate the alert rules now (the server does every minute). ``now`` (unix
        time) evaluates as if it were then (for drills and tests; admin only)."""
        now = body.now if body is not None and body.now is not None else time.time()
        out = await platform.alerts_tick(now)
        platform.governor.record(principal, "alerts.evaluate", "alerts", "allowed",
                                 f"at {now:.0f}: {len(out['fired'])} fired, "
                                 f"{len(out['resolved'])} resolved")
        return out

    @api.get(f"{PREFIX}/alerts/history", dependencies=protected)
    async def alerts_history(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                             alert: str | None = None) -> list[dict]:
        """What alerts did, newest first: fired, resolved, acked, silenced, unsilenced."""
        return await asyncio.to_thread(platform.alerting.rows.history, limit, alert)

    @api.get(f"{PREFIX}/alerts/silences", dependencies=protected)
    async def silences() -> list[dict]:
        """The silences in force."""
        rows = await asyncio.to_thread(platform.alerting.active_silences, time.time())
        return [r.to_dict() for r in rows]

    @api.post(f"{PREFIX}/alerts/silences", dependencies=operating, status_code=201)
    async def silence(body: SilenceBody, principal: Caller) -> dict:
        """Silence the alerts the matchers match (rule, subject, severity; globs) for
        ``duration`` seconds or until ``until``: they still show, nobody is told."""
        now = time.time()
        until = body.until if body.until is not None else \
            now + (body.duration if body.duration is not None else 2 * 3600.0)
        row = await asyncio.to_thread(platform.alerting.silence, body.matchers, until,
                                      principal.name, body.comment, now)
        platform.governor.record(principal, "alert.silence", f"silence:{row.id}", "allowed",
                                 body.comment, matchers=row.matchers, until=row.until)
        return row.to_dict()

    @api.delete(f"{PREFIX}/alerts/silences/{{silence_id}}", dependencies=operating)
    async def unsilence(silence_id: str, principal: Caller) -> dict:
        await asyncio.to_thread(platform.alerting.unsilence, silence_id, principal.name,
                                time.time())
        platform.governor.record(principal, "alert.unsilence", f"silence:{silence_id}",
                                 "allowed")
        return {"id": silence_id, "deleted": True}

    @api.post(f"{PREFIX}/alerts/{{alert_id}}/ack",
              dependencies=[Depends(role(Role.developer, "acknowledging an alert"))])
    async def ack(alert_id: str, principal: Caller) -> dict:
        """Acknowledge a firing alert: who and when are recorded on its episode (until it
        resolves); notices are not repeated anyway."""
        row = await asyncio.to_thread(platform.alerting.ack, alert_id, principal.name,
                                      time.time())
        platform.governor.record(principal, "alert.ack", alert_id, "allowed",
                                 f"episode {row.episode}")
        return row.to_dict()

    @api.get(f"{PREFIX}/apps/{{name}}/revisions", dependencies=protected)
    async def revisions(name: str) -> list[dict]:
        return platform.revisions(name)

    @api.post(f"{PREFIX}/apps/{{name}}/rollback", dependencies=protected)
    async def rollback(name: str, principal: Caller, body: RollbackBody | None = None) -> dict:
        return await platform.rollback(name, body.revision if body else None, actor=principal)

    @api.post(f"{PREFIX}/apps/{{name}}/invoke", dependencies=protected)
    async def invoke(name: str, request: Request, principal: Caller) -> Response:
        """Invoke the app directly with a JSON event (Lambda's RequestResponse).
        HTTP-only apps (ASGI/WSGI) get the data as a POST / body instead."""
        app = platform.app(name)
        manages(principal, name, "invoke")
        payload = await request.body()
        if payload:
            _json(payload, "the event", "bad_event")
        rid = platform.new_request_id()
        msg: p.HttpRequest | p.Event
        if app.kind == "lambda":
            msg = p.Event(id=rid, payload=payload)
        else:
            msg = p.HttpRequest(id=rid, method="POST" if payload else "GET", path="/",
                                headers=[("content-type", "application/json")], body=payload,
                                host=f"{name}.localhost", mount="")
        inv = Invocation.start(name, "invoke", msg, timeout=app.timeout,
                               traceparent=request.headers.get("traceparent"))
        if request.headers.get("x-skiff-invocation-type", "").lower() == "event":
            await platform.accept(inv)
            return Response(json.dumps({"invocation_id": rid, "status": "queued"}).encode(),
                            status_code=202, media_type="application/json")
        try:
            resp = await platform.invoke(app, inv)
        except InvocationError as exc:
            # the function failed, not this API: the invoker is told so as a 502 (Lambda's
            # Invoke answers a function error beside its own 200s), with the error itself
            raise InvocationError(exc.message, code=exc.code, status=502,
                                  **exc.details) from None
        if app.kind == "lambda":
            resp = p.Response(id=resp.id, status=200, headers=resp.headers, body=resp.body)
        status, headers, body = app_response(app, resp, "POST", rid, lambda line: (
            platform.log(app, line, request_id=rid)))
        out = Response(body, status_code=status)
        out.raw_headers = headers  # checked and framed already; as the gateway sends them
        return out

    @api.get(f"{PREFIX}/apps/{{name}}/invocations", dependencies=protected)
    async def invocations(name: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
        return [r | {"attributes": _otel(r)} for r in platform.invocations(name, limit)]

    @api.delete(f"{PREFIX}/apps/{{name}}/instances", dependencies=protected)
    async def stop_instances(name: str, principal: Caller) -> dict:
        """Scale the app to zero now (in-flight requests finish first)."""
        manages(principal, name, "stop instances of")
        stopped = platform.stop_instances(name)
        platform.governor.record(principal, "instances.stop", name, "allowed",
                                 f"{stopped} stopped", app=name)
        return {"app": name, "stopped": stopped}

    @api.get(f"{PREFIX}/apps/{{name}}/logs", dependencies=protected)
    async def logs(name: str, after: int = 0,
                   limit: Annotated[int, Query(ge=1, le=5000)] = 500,
                   stream: str | None = None,
                   tail: Annotated[int | None, Query(ge=1, le=5000)] = None,
                   since: str | None = None, request_id: str | None = None,
                   level: str | None = None) -> list[dict]:
        """App output (stdout, stderr) and platform lines, oldest first, each with its
        ``level`` (see skiff.observe.logview); ``stream=egress`` gives every connection
        attempt through the egress proxy. ``tail=N``: the newest N lines (else the first
        ``limit`` after ``after``); ``since``: 10m, 2h, epoch seconds or ISO 8601;
        ``request_id``: one request's lines; ``level``: that level and above."""
        try:
            since_ts = parse_since(since, time.time()) if since else None
        except ValueError as exc:
            raise SkiffError(str(exc), code="bad_value", status=400) from None
        minimum = None
        if level:
            minimum = normal_level(level)
            if minimum is None:
                raise SkiffError(f"level={level!r} is not a level: use one of "
                                 f"{', '.join(LEVELS)}", code="bad_value", status=400)
        # a level filter reads further back, so that --tail N still gives N such lines
        count = tail or limit
        rows = platform.logs(name, after, 5000 if minimum and tail else count, stream,
                             newest=tail is not None, since=since_ts, request_id=request_id)
        for r in rows:
            r["level"] = line_level(r["stream"], r["line"])
        if minimum:
            rows = [r for r in rows if at_least(r["level"], minimum)]
            rows = rows[-count:] if tail else rows[:count]
        return rows

    @api.get(f"{PREFIX}/secrets", dependencies=protected)
    async def list_secrets() -> list[dict]:
        """Names and versions only: values never leave the store through the API."""
        return platform.secret_list()

    @api.put(f"{PREFIX}/secrets/{{name}}", dependencies=operating)
    async def set_secret(name: str, body: SecretBody, principal: Caller) -> dict:
        version = platform.secret_set(name, body.value, actor=principal)
        return {"name": name, "version": version}

    @api.delete(f"{PREFIX}/secrets/{{name}}", dependencies=operating)
    async def delete_secret(name: str, principal: Caller) -> dict:
        removed = platform.secret_delete(name, actor=principal)
        return {"name": name, "versions_removed": removed}

    @api.get(f"{PREFIX}/invocations/{{invocation_id}}", dependencies=protected)
    async def async_status(invocation_id: str) -> dict:
        """Status and result of an async invocation (queued, retrying,
        succeeded, failed)."""
        return platform.async_status(invocation_id)

    @api.get(f"{PREFIX}/queues", dependencies=protected)
    async def queues() -> list[dict]:
        return platform.queues()

    @api.post(f"{PREFIX}/queues/{{name}}/messages", status_code=202, dependencies=operating)
    async def send_message(name: str, body: MessageBody, create: bool = False) -> dict:
        """Enqueue a message; a queue no app declares and the broker never held is a 404
        queue_not_found (a typo must not make a new queue) unless ``create``."""
        data = body.body if isinstance(body.body, str) else json.dumps(body.body)
        return {"message_id": await asyncio.to_thread(
            platform.queue_send, name, data.encode(), body.attributes or None, body.delay,
            create)}

    @api.get(f"{PREFIX}/queues/{{name}}/messages", dependencies=protected)
    async def peek(name: str, limit: Annotated[int, Query(ge=1, le=100)] = 10) -> list[dict]:
        return [{"message_id": m.message_id, "body": m.body.decode("utf-8", "replace"),
                 "attributes": m.attributes, "receive_count": m.receive_count,
                 "sent_at": m.sent_at, "source_queue": m.source_queue, "leased": m.leased}
                for m in platform.queue_peek(name, limit)]

    @api.delete(f"{PREFIX}/queues/{{name}}/messages", dependencies=operating)
    async def purge(name: str, principal: Caller) -> dict:
        purged = platform.queue_purge(name)
        platform.governor.record(principal, "queue.purge", f"queue:{name}", "allowed",
                                 f"{purged} message(s)")
        return {"purged": purged}

    @api.post(f"{PREFIX}/queues/{{name}}/redrive", dependencies=operating)
    async def redrive(name: str, principal: Caller, to: str | None = None) -> dict:
        """Move dead-lettered messages back to their source queue (or to ``to``)."""
        moved = platform.queue_redrive(name, to)
        platform.governor.record(principal, "queue.redrive", f"queue:{name}", "allowed",
                                 f"{moved} message(s)" + (f" to {to}" if to else ""))
        return {"moved": moved}

    @api.post(f"{PREFIX}/events", status_code=202,
              dependencies=[Depends(role(Role.developer, "publishing events"))])
    async def publish(request: Request) -> dict:
        """Publish CloudEvents (binary, structured or batch mode) to the bus."""
        from skiff.bus import parse_http_events

        body = await request.body()
        try:
            events = parse_http_events(list(request.headers.items()), body)
        except RecursionError:
            raise SkiffError("the events are nested too deeply", code="bad_event",
                             status=400) from None
        return {"events": [await asyncio.to_thread(platform.publish, e) for e in events]}

    @api.get(f"{PREFIX}/apps/{{name}}/kv", dependencies=protected)
    async def kv_list(name: str, principal: Caller, prefix: str = "", cursor: str | None = None,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
        manages(principal, name, "read the data of")
        return platform.kv_query(name, prefix, limit, cursor)

    @api.get(f"{PREFIX}/apps/{{name}}/kv/{{key:path}}", dependencies=protected)
    async def kv_get(name: str, key: str, principal: Caller) -> dict:
        manages(principal, name, "read the data of")
        item = platform.kv_get(name, key)
        if item is None:
            raise NotFound(f"app {name} has no key {key!r}", code="key_not_found")
        return item

    @api.put(f"{PREFIX}/apps/{{name}}/kv/{{key:path}}", dependencies=protected)
    async def kv_put(name: str, key: str, request: Request, principal: Caller) -> dict:
        platform.app(name)  # before the body is read
        manages(principal, name, "write the data of")
        value = _json(await request.body(), "the value", "bad_value")
        out = platform.kv_put(name, key, value)
        platform.governor.record(principal, "kv.put", name, "allowed", f"key {key[:200]!r}",
                                 app=name)
        return out

    def _grant_key(body: RouteGrantBody) -> tuple[str, str | None, str]:
        return body.app, body.host.lower() if body.host else None, body.path.rstrip("/")

    @api.get(f"{PREFIX}/route-grants", dependencies=protected)
    async def route_grants() -> list[dict]:
        """Routes the operator lets an app have although they overlap others' (see
        `skiff routes grant`)."""
        return [g | {"path": g["path"] or "/"} for g in platform.route_grants()]

    @api.put(f"{PREFIX}/route-grants", dependencies=operating)
    async def grant_route(body: RouteGrantBody, principal: Caller) -> dict:
        """Let ``app`` declare this route (host and/or path prefix) at its next deploy,
        whoever else it overlaps; the owned defaults of other apps still win."""
        app, host, path = _grant_key(body)
        platform.grant_route(app, host, path)
        platform.governor.record(principal, "route.grant", app, "allowed",
                                 f"host {host or '-'}, path {path or '/'}", app=app)
        return {"app": app, "host": host, "path": path or "/", "granted": True}

    @api.delete(f"{PREFIX}/route-grants", dependencies=operating)
    async def revoke_route(body: RouteGrantBody, principal: Caller) -> dict:
        """Withdraw a grant; a route it allowed is no longer served, from now on."""
        app, host, path = _grant_key(body)
        if not platform.revoke_route(app, host, path):
            raise NotFound(f"no route grant for app {app} with host {host or '-'} and path "
                           f"{path or '/'}; see `skiff routes grants`", code="grant_not_found")
        platform.governor.record(principal, "route.revoke", app, "allowed",
                                 f"host {host or '-'}, path {path or '/'}", app=app)
        return {"app": app, "host": host, "path": path or "/", "granted": False}

    @api.get(f"{PREFIX}/system", dependencies=protected)
    async def system() -> dict:
        out = platform.system()
        if edge_stats is not None:
            out["edge"] = edge_stats()  # connections shed, refused, cut: is someone at it?
        return out

    governance_routes(api, platform, protected, admin_only)
    return AdminGuard(api, token, platform)


def governance_routes(api: FastAPI, platform: Facade, protected: list,
                      admin_only: list) -> None:
    """Identities, policies and the audit trail."""
    gov = platform.governor

    @api.get(f"{PREFIX}/whoami", dependencies=protected)
    async def whoami(principal: Caller) -> dict:
        return principal.to_dict() | {"identities_enabled": gov.identities.enabled}

    @api.get(f"{PREFIX}/tokens", dependencies=admin_only)
    async def list_tokens() -> list[dict]:
        """Every service token's id, user, role and state; never the token."""
        return gov.identities.tokens()

    @api.post(f"{PREFIX}/tokens", status_code=201, dependencies=admin_only)
    async def create_token(body: TokenBody, principal: Caller) -> dict:
        """A new service token. The token is in this answer only: it is stored hashed."""
        role = Role.parse(body.role)
        if body.expires_in is not None and body.expires_in <= 0:
            raise SkiffError("expires_in must be a positive number of seconds",
                             code="bad_request", status=400)
        token, row = gov.identities.create_token(body.user, role, expires_in=body.expires_in)
        gov.record(principal, "token.create", f"token:{row.id}", "allowed",
                   f"for user {row.user}, role {row.role}"
                   + (", expires " + time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                    time.gmtime(row.expires))
                      if row.expires else ""))
        return {"id": row.id, "user": row.user, "role": row.role, "expires": row.expires,
                "token": token}

    @api.delete(f"{PREFIX}/tokens/{{token_id}}", dependencies=admin_only)
    async def revoke_token(token_id: str, principal: Caller) -> dict:
        if not gov.identities.revoke(token_id):
            raise NotFound(f"no active token {token_id!r}; see `skiff tokens ls`",
                           code="token_not_found")
        gov.record(principal, "token.revoke", f"token:{token_id}", "allowed", "revoked")
        return {"id": token_id, "revoked": True}

    @api.get(f"{PREFIX}/users", dependencies=protected)
    async def list_users() -> list[dict]:
        return gov.identities.users()

    @api.post(f"{PREFIX}/users", status_code=201, dependencies=admin_only)
    async def add_user(body: UserBody, principal: Caller) -> dict:
        created = gov.identities.add_user(body.name, body.groups)
        gov.record(principal, "user.add", f"user:{body.name}", "allowed",
                   ("created" if created else "exists") + (
                       f"; groups {', '.join(body.groups)}" if body.groups else ""))
        return {"name": body.name, "groups": gov.identities.rows.user_groups(body.name),
                "created": created}

    @api.delete(f"{PREFIX}/users/{{name}}", dependencies=admin_only)
    async def remove_user(name: str, principal: Caller) -> dict:
        if not gov.identities.remove_user(name):
            raise NotFound(f"no user {name!r}; see `skiff users ls`", code="user_not_found")
        gov.record(principal, "user.rm", f"user:{name}", "allowed", "removed")
        return {"name": name, "removed": True}

    @api.get(f"{PREFIX}/groups", dependencies=protected)
    async def list_groups() -> list[dict]:
        return gov.identities.groups()

    @api.post(f"{PREFIX}/groups", status_code=201, dependencies=admin_only)
    async def add_group(body: GroupBody, principal: Caller) -> dict:
        created = gov.identities.add_group(body.name)
        gov.record(principal, "group.add", f"group:{body.name}", "allowed",
                   "created" if created else "exists")
        return {"name": body.name, "created": created}

    @api.get(f"{PREFIX}/policies", dependencies=protected)
    async def list_policies() -> dict:
        error = gov.policy_error()
        return {"policies": [p.to_dict() for p in gov.policies()],
                "error": error.to_dict()["error"] if error else None}

    @api.post(f"{PREFIX}/policies", status_code=201)
    async def apply_policies(body: PolicyBody, principal: Caller) -> dict:
        """Check and store policies (YAML); every running app is re-evaluated."""
        applied = await asyncio.to_thread(gov.apply, body.text, actor=principal)
        return {"applied": [p.id for p in applied],
                "violations": await asyncio.to_thread(gov.violations)}

    @api.delete(f"{PREFIX}/policies/{{policy_id}}")
    async def remove_policy(policy_id: str, principal: Caller) -> dict:
        await asyncio.to_thread(gov.remove, policy_id, actor=principal)
        return {"removed": policy_id, "violations": await asyncio.to_thread(gov.violations)}

    @api.get(f"{PREFIX}/policies/violations", dependencies=protected)
    async def violations() -> list[dict]:
        """What running apps violate now (Gatekeeper-style audit); nothing is stopped."""
        return await asyncio.to_thread(gov.violations)

    @api.get(f"{PREFIX}/audit", dependencies=protected)
    async def audit(app: str | None = None, since: float | None = None,
                    actor: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[dict]:
        """Who did what, oldest first (the newest ``limit`` entries)."""
        return [e.to_dict() for e in await asyncio.to_thread(
            gov.audit.query, app=app, since=since, actor=actor, limit=limit)]
