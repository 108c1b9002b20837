"""The platform as the gateway and the admin API see it (``gateway.facade.Facade``):
a few operations over the parts the composition root built and passed in."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skiff import ipc as p
from skiff.bus import Broker
from skiff.config import Config
from skiff.egress import EgressProxy
from skiff.errors import DeployError, Gone, NotFound, SkiffError
from skiff.governance import Governor, Principal, Role, SecretStore
from skiff.governance.access import Access
from skiff.governance.identity import SYSTEM_BUDGETS, SYSTEM_LIFECYCLE
from skiff.governance.lifecycle import SWEEP_EVERY, Lifecycle, Sweep
from skiff.governance.lifecycle_rows import ArchiveRow
from skiff.instance import Launcher
from skiff.instance.environments import DEFAULT
from skiff.instance.isolation import Support
from skiff.manifest.state_machine import load_state_machine, resource_kind
from skiff.observe import Observe
from skiff.observe.alerts import Alerting
from skiff.platform import alerting as alert_views
from skiff.platform.archive import Archiver
from skiff.platform.deploy import Deployer
from skiff.platform.follow import Follower
from skiff.platform.inventory import Inventory
from skiff.platform.invoke import Invoker
from skiff.platform.logsink import LogSink
from skiff.platform.registry import App, Registry
from skiff.platform.sdkcalls import SdkCalls
from skiff.platform.spending import Spending
from skiff.platform.views import describe
from skiff.platform.workflows import StepFunctions
from skiff.scheduler import Invocation, Stream, WebSocket
from skiff.sdk.services import Services
from skiff.storage import Storage
from skiff.store import KV, Store
from skiff.triggers import EventPlane

log = logging.getLogger(__name__)
#: seconds between reads of the archived apps (one small query): how soon an app another
#: node archived answers 410 here rather than 404
ARCHIVED_REFRESH = 5.0


@dataclasses.dataclass
class Parts:
    """Everything the platform runs on, built by the composition root."""

    store: Store
    registry: Registry
    logs: LogSink
    invoker: Invoker
    deployer: Deployer
    launcher: Launcher
    support: Support
    secrets: SecretStore
    egress: EgressProxy
    events: EventPlane
    broker: Broker
    services: Services
    sdk: SdkCalls
    kv: KV
    storage: Storage
    follower: Follower
    governor: Governor
    access: Access
    lifecycle: Lifecycle
    archiver: Archiver
    observe: Observe = dataclasses.field(default_factory=Observe)
    workflows: StepFunctions | None = None  # state machines and their executions
    spending: Spending | None = None  # cost figures and budgets
    alerting: Alerting | None = None  # SLOs and alert rules (skiff.observe.alerts)
    #: the budget seam: an app's spend over its budget (1.0 = all), or None
    budget_use: Callable[[str], float | None] | None = None


class Platform:
    def __init__(self, config: Config, parts: Parts) -> None:
        self._config = config
        self._p = parts
        self._ticker: asyncio.Task | None = None
        self.started = time.time()
        self._archived: dict[str, ArchiveRow] = {}  # what answers 410, by app
        self._swept = 0.0  # monotonic time of the last lifecycle sweep
        self._archived_at = 0.0  # ... and of the last read of the archived apps
        self._sweeping = asyncio.Lock()
        self._lapsed: dict[str, float] = {}  # expired apps throttled until renewed
        spending = parts.spending
        self._evaluated = 0.0  # monotonic time of the last alert evaluation
        self._evaluating = asyncio.Lock()
        self._inventory = Inventory(registry=parts.registry, store=parts.store, kv=parts.kv,
                                    governor=parts.governor, lifecycle=parts.lifecycle,
                                    cost=spending.inventory_cost if spending else None)
        self._held: set[str] = set()  # apps whose queues wait (_sync_holds)
        self._budget_held: set[str] = set()  # ... because a budget throttles them
        self._zeroed: dict[str, tuple[int, tuple]] = {}  # app -> its min instances, warm

    @property
    def config(self) -> Config:
        return self._config

    @property
    def observe(self) -> Observe:
        return self._p.observe

    @config.setter
    def config(self, config: Config) -> None:
        # the server replaces the config once it knows the port it bound (port 0 picks
        # one): the egress guard must keep apps off that port from then on
        self._config = config
        if config.port:
            self._p.egress.guard.platform_ports = {config.port}

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        await self._p.deployer.restore()
        # what serves again is re-evaluated, and each app's log told of what it violates
        # (nothing is stopped: a policy added while the server was down must not
        # un-serve apps silently)
        await asyncio.to_thread(self._p.governor.reevaluate)
        self._p.follower.start()  # its first reconcile catches what changed since the restore
        await self._p.launcher.warm(dataclasses.replace(DEFAULT, profile="strict"))
        self._p.events.start()
        await self._load_archived()
        self._swept = time.monotonic()  # the first sweep a minute in, not during the start
        self._evaluated = time.monotonic()  # ... and the first alert evaluation
        self._p.observe.start()
        if self._p.workflows is not None:  # after the restore: resumed tasks need their apps
            await self._p.workflows.start()
        self._ticker = asyncio.ensure_future(self._tick())

    async def stop(self) -> None:
        if self._ticker:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self._p.follower.stop()
        if self._p.workflows is not None:
            await self._p.workflows.stop()
        await self._p.egress.aclose()
        self._p.sdk.close()
        await self._p.events.stop()
        self._p.secrets.close()
        self._p.kv.close()
        self._p.deployer.close()
        await self._p.launcher.close()
        self._p.storage.close()
        # spans still queued are exported (within OTEL_EXPORTER_OTLP_TIMEOUT), off the loop
        await asyncio.to_thread(self._p.observe.close)

    async def _tick(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._config.tick_seconds)
            try:
                self._p.deployer.follow_secrets()
                failing = False
            except SkiffError as exc:  # the database is away: the loop goes on scaling
                if not failing:
                    log.warning("secret rotations not followed until this works: %s",
                                exc.message)
                failing = True
            for app in list(self._p.registry.apps.values()):
                if app.pool is not None:
                    try:
                        app.pool.rescale()
                    except Exception:  # one app never stops the loop
                        log.exception("scaling %s failed", app.name)
            if time.monotonic() - self._archived_at >= ARCHIVED_REFRESH:
                try:  # what another node archived answers 410 here too, soon
                    await self._load_archived()
                except Exception:
                    log.exception("reading the archived apps failed")
            if time.monotonic() - self._swept >= SWEEP_EVERY:
                self._swept = time.monotonic()
                try:
                    await self.lifecycle_tick(time.time())
                except Exception:  # the sweep runs again next minute
                    log.exception("the lifecycle sweep failed")
            every = self._config.alert_every
            if self._p.alerting is not None and every > 0 \
                    and time.monotonic() - self._evaluated >= every:
                self._evaluated = time.monotonic()
                try:
                    await self.alerts_tick(time.time())
                except Exception:  # evaluated again next minute
                    log.exception("the alert evaluation failed")

    @property
    def sfn(self) -> StepFunctions:
        if self._p.workflows is None:
            raise SkiffError("workflows are not enabled on this platform", code="not_found",
                             status=404)
        return self._p.workflows

    def new_request_id(self) -> str:
        return str(uuid.uuid4())

    # -- the data plane ---------------------------------------------------------
    def route(self, host: str, path: str) -> tuple[Any, App] | None:
        return self._p.registry.route(host, path)

    def app(self, name: str) -> App:
        return self._p.registry.get(name)

    async def invoke(self, app: App, inv: Invocation, *,
                     stream: bool = False) -> p.Response | Stream | WebSocket:
        return await self._p.invoker.invoke(app, inv, stream=stream)

    async def accept(self, inv: Invocation) -> str:
        """Accept an async invocation durably (202); the event plane runs it."""
        return await self._p.events.accept(inv.app, inv.request, inv.traceparent)

    def machine_route(self, app: str, method: str, path: str) -> str | None:
        if self._p.workflows is None:
            return None
        return self._p.workflows.route(app, method, path)

    async def start_routed(self, machine: str, body: bytes) -> dict:
        return await self.sfn.start_routed(machine, body)

    def log(self, app: App, line: str, *, request_id: str = "") -> None:
        self._p.logs.platform(app.name, app.revision, line, request_id=request_id)

    # -- apps and revisions -------------------------------------------------------
    def app_names(self) -> list[str]:
        return sorted(self._p.registry.apps)

    def describe(self, name: str, *, manifest: bool = False) -> dict:
        app = self.app(name)
        out = describe(app, self._p.store)
        if manifest:
            out["manifest"] = app.manifest.to_dict()
        return out

    async def deploy(self, src: Path, *, allow_secret_findings: str | None = None,
                     actor: Principal | None = None, app: str | None = None,
                     progress: Callable[[str], None] | None = None) -> dict:
        """``app``: the name, when the caller knows it (the audit entry of a deploy
        that fails before its manifest loads names it). ``progress`` hears the stages
        (resolve, install, build environment, trial), maybe from a worker thread."""
        if self._p.workflows is not None and resource_kind(src) == "StateMachine":
            return await self._deploy_machine(src, actor)
        try:
            out = await self._p.deployer.deploy(src, allow_secret_findings=allow_secret_findings,
                                                actor=actor, progress=progress)
        except SkiffError as exc:
            self._audit_refusal(actor, "deploy", app or _app_name(src), exc)
            raise
        if out.get("pending"):
            self._p.governor.record(actor, "deploy", out["app"], "pending",
                                    f"held for approval {out['approval']}: "
                                    + ", ".join(out["scopes"]), app=out["app"],
                                    approval=out["approval"])
            return out
        await asyncio.to_thread(self._p.lifecycle.deployed, out["app"])  # its TTL starts over
        reason = f"revision {out['revision']}" + ("" if out["changed"] else " (unchanged)")
        if allow_secret_findings:
            reason += f"; secret-scan findings allowed: {allow_secret_findings}"
        warned = out.get("policy", {}).get("warnings", [])
        self._p.governor.record(actor, "deploy", out["app"], "allowed", reason, app=out["app"],
                                revision=out["revision"],
                                warnings=[w["policy"] for w in warned])
        changed = out.get("owner_changed")
        if changed:  # the old owner may know the values: say so where both will look
            self._p.governor.record(actor, "owner.change", out["app"], "allowed",
                                    changed["message"], app=out["app"])
            self._p.logs.platform(out["app"], out["revision"], changed["message"])
        return out

    async def _deploy_machine(self, src: Path, actor: Principal | None) -> dict:
        """A ``kind: StateMachine`` directory: its definition checked (ASL, and every app
        its tasks name deployed) and saved as the machine's current revision."""
        sfn = self.sfn
        try:
            if actor is not None:  # the owners of apps may deploy; viewers only read
                actor.require(Role.developer, "deploying a state machine")
            manifest, definition = load_state_machine(src)
            app = manifest.spec.app
            if app is not None:  # it acts as the app: only who may act on the app binds it
                bound = self._p.registry.apps.get(app)
                if bound is None:
                    raise NotFound(f"state machine {manifest.name}: spec.app names the app "
                                   f"{app!r}, which is not deployed; deploy it first",
                                   code="app_not_found", app=app)
                self._p.governor.may_remove(actor, bound.manifest,
                                            "bind a state machine to")
            decisions = await asyncio.to_thread(
                self._p.governor.admit_machine, manifest, actor=actor,
                owner=bound.manifest.metadata.owner if app is not None else None)
            before = sfn.history.machine(manifest.name)
            triggers = tuple(t.model_dump(by_alias=True, exclude_defaults=True, mode="json")
                             for t in manifest.spec.triggers)
            row = await asyncio.to_thread(sfn.save, manifest.name, definition,
                                          manifest.spec.type, app, triggers)
        except SkiffError as exc:
            self._audit_refusal(actor, "deploy", _app_name(src), exc)
            raise
        changed = before is None or before.revision != row.revision
        self._p.governor.record(actor, "deploy", f"statemachine:{row.name}", "allowed",
                                f"revision {row.revision}" + ("" if changed else " (unchanged)"))
        warnings = [d.to_dict() for d in decisions if not d.allowed and d.enforcement == "warn"]
        return {"app": row.name, "kind": "StateMachine", "revision": row.revision,
                "changed": changed, "type": row.type, "policy": {"warnings": warnings}}

    async def rollback(self, name: str, revision: str | None = None, *,
                       actor: Principal | None = None) -> dict:
        if (name not in self._p.registry.apps and self._p.workflows is not None
                and self._p.workflows.history.machine(name) is not None):
            row = self._p.workflows.rollback(name, revision)
            self._p.governor.record(actor, "rollback", f"statemachine:{name}", "allowed",
                                    f"revision {row.revision}")
            return {"app": name, "kind": "StateMachine", "revision": row.revision}
        try:
            out = await self._p.deployer.rollback(name, revision, actor=actor)
        except SkiffError as exc:
            self._audit_refusal(actor, "rollback", name, exc)
            raise
        self._p.governor.record(actor, "rollback", name, "allowed",
                                f"to revision {out['revision']}", app=name)
        return out

    async def delete(self, name: str, *, actor: Principal | None = None,
                     purge: bool = False) -> dict:
        """``skiff rm``: archive the app, then remove it (``purge``: with no archive; an
        archive of an earlier app of the name, one that expired or was removed, stays)."""
        try:
            if purge:
                out = await self._p.deployer.delete(name, actor=actor)
                if self._p.governor.approvals is not None:  # a later app asks anew
                    await asyncio.to_thread(self._p.governor.approvals.rows.forget, name)
            else:
                out = await self._archive_and_remove(name, actor, "removed")
        except SkiffError as exc:
            self._audit_refusal(actor, "delete", name, exc)
            raise
        self._p.governor.record(actor, "delete", name, "allowed",
                                f"{out['kv_items']} KV item(s), {out['messages']} message(s)"
                                + ("; purged" if purge else f"; archived to {out['archive']}"),
                                app=name)
        machines = await self._forget_machines(name)
        if machines:
            out["state_machines"] = machines
        return out

    async def _forget_machines(self, app: str) -> list[str]:
        """The state machines bound to a deleted app go with it: a later app of the name,
        perhaps another owner's, must not inherit machines that act as it."""
        sfn = self._p.workflows
        if sfn is None:
            return []
        bound = [r.name for r in await asyncio.to_thread(sfn.history.machines) if r.app == app]
        for name in bound:
            sfn.delete_machine(name)
            self._p.logs.platform(app, "", f"state machine {name} deleted with its app")
        return bound

    # -- inventory and drafts (skiff.governance.inventory, .discover) -----------------------
    async def inventory(self) -> dict:
        return await asyncio.to_thread(self._inventory.build)

    async def register_drafts(self, finds: Any, *, actor: Principal) -> list[dict]:
        return await asyncio.to_thread(self._inventory.register, finds, actor)

    async def claim(self, name: str, *, actor: Principal) -> dict:
        try:
            return await asyncio.to_thread(self._inventory.claim, name, actor)
        except SkiffError as exc:
            self._audit_refusal(actor, "draft.claim", name, exc)
            raise

    # -- approvals ---------------------------------------------------------------------
    def approval_list(self, state: str | None) -> list[dict]:
        approvals = self._p.governor.approvals
        return [r.to_dict() for r in approvals.rows.list(state)] if approvals else []

    async def decide(self, id: str, *, approve: bool, reason: str,
                     actor: Principal) -> dict:
        """Approve (the held upload is deployed now, its scopes remembered for the app)
        or deny a pending request; never by its author."""
        approvals = self._p.governor.approvals
        assert approvals is not None
        action = "approval.approve" if approve else "approval.deny"
        try:
            row = await asyncio.to_thread(approvals.decide, id, actor, approve, reason)
        except SkiffError as exc:
            self._audit_refusal(actor, action, id, exc)
            raise
        self._p.governor.record(actor, action, row.app, "allowed",
                                f"{id} by {row.requester}: {', '.join(row.scopes)}"
                                + (f"; {reason}" if reason else ""), app=row.app)
        out = row.to_dict()
        source = Path(row.source)
        try:
            if approve:  # as its author asked, with the operator as the one who deployed it
                out["deploy"] = await self.deploy(source / "app", actor=actor, app=row.app)
        finally:
            await asyncio.to_thread(shutil.rmtree, source, True)
        return out

    # -- SLOs and alerts (skiff.observe.alerts) ------------------------------------------
    @property
    def alerting(self) -> Alerting:
        if self._p.alerting is None:
            raise SkiffError("alerts are not enabled on this platform", code="not_found",
                             status=404)
        return self._p.alerting

    async def alerts_tick(self, now: float) -> dict:
        """One alert evaluation at ``now`` (the server's clock every minute; tests move it
        through the admin API): what fires, what resolves, notices delivered."""
        alerting = self.alerting
        async with self._evaluating:
            apps, queues = await asyncio.to_thread(
                alert_views.views, self._p.registry, self._p.store, self._p.events, now,
                self._p.budget_use)
            return await asyncio.to_thread(alerting.evaluate, now, apps, queues)

    # -- TTL: reminders, archive, restore ------------------------------------------------
    async def lifecycle_tick(self, now: float) -> dict:
        """One lifecycle sweep at ``now`` (the server's clock every minute; tests move it
        through the admin API): reminders, then the apps that expired are archived."""
        async with self._sweeping:
            budgets = await self._budget_tick(now)  # its notices go out with the sweep's
            sweep: Sweep = await asyncio.to_thread(self._p.lifecycle.tick, now)
            archived = []
            for name in sweep.expired:
                try:
                    out = await self._archive_and_remove(name, SYSTEM_LIFECYCLE, "expired")
                except Exception as exc:  # noqa: BLE001 - it serves on; the next sweep retries
                    why = exc.message if isinstance(exc, SkiffError) else repr(exc)
                    self._p.logs.platform(name, "", f"expiry: could not archive the app: "
                                          f"{why}; it keeps serving, and the next sweep "
                                          "tries again")
                    await asyncio.to_thread(self._p.lifecycle.expiry_failed, name)
                    continue
                archived.append({"app": name, "archive": out["archive"]})
                self._p.governor.record(SYSTEM_LIFECYCLE, "archive", name, "allowed",
                                        f"TTL expired; archived to {out['archive']}", app=name)
            self._lapsed = sweep.lapsed  # throttled until renewed (SKIFF_ON_EXPIRY=throttle)
            self._sync_holds()  # and their queued work waits, as a budget's does
            for name in sweep.paused:
                self._p.logs.platform(name, "", "TTL expired: routes answer 429 app_expired "
                                      f"until it is renewed (`skiff renew {name}`)")
                self._p.governor.record(SYSTEM_LIFECYCLE, "expire.throttle", name, "allowed",
                                        "TTL expired; throttled until renewed", app=name)
            if archived:  # their notifications too
                await asyncio.to_thread(self._p.lifecycle.deliver, now, sweep)
            await self._load_archived()  # and what other nodes archived
            return sweep.to_dict() | {"archived": archived, "budgets": budgets}

    # -- cost and budgets (skiff.observe.cost, skiff.governance.budgets) ----------------
    @property
    def _spending(self) -> Spending:
        if self._p.spending is None:
            raise SkiffError("cost and budgets are not enabled on this platform",
                             code="not_found", status=404)
        return self._p.spending

    async def cost(self, by: str, since: float, until: float) -> dict:
        return await asyncio.to_thread(self._spending.report, by, since, until)

    async def budgets(self, now: float | None = None) -> list[dict]:
        verdicts = await asyncio.to_thread(self._spending.verdicts,
                                           time.time() if now is None else now)
        return [v.to_dict() for v in verdicts]

    async def budget_set(self, body: dict, *, actor: Principal) -> dict:
        """Add or replace a budget (operators); judged at once."""
        from skiff.governance.budgets import budget

        actor.require(Role.operator, "setting budgets")
        b = budget(body.get("owner"), body.get("metric"), body.get("limit"),
                   body.get("action", "throttle"), created=time.time(), created_by=actor.name)
        await asyncio.to_thread(self._spending.rows.put, b)
        self._p.governor.record(actor, "budget.set", f"budget:{b.id}", "allowed",
                                f"{b.limit:g} {b.metric} a month, then {b.action}")
        async with self._sweeping:
            await self._budget_tick(time.time())
        return next(v for v in await self.budgets() if v["id"] == b.id)

    async def budget_rm(self, owner: str, metric: str | None, *, actor: Principal) -> dict:
        from skiff.governance.budgets import BudgetNotFound

        actor.require(Role.operator, "removing budgets")
        removed = await asyncio.to_thread(self._spending.rows.remove, owner, metric)
        if not removed:
            raise BudgetNotFound(f"no budget of {owner}" + (f" for {metric}" if metric else "")
                                 + "; `skiff budgets ls` lists them")
        self._p.governor.record(actor, "budget.rm", f"budget:{owner}/{metric or '*'}",
                                "allowed", f"{removed} budget(s) removed")
        async with self._sweeping:
            await self._budget_tick(time.time())
        return {"owner": owner, "metric": metric, "removed": removed}

    def throttled(self, name: str) -> SkiffError | None:
        """The 429 of an app a budget throttles, or one expired and throttled until renewed
        (memory only: on every request)."""
        expired = self._lapsed.get(name)
        if expired is not None:
            return self._p.lifecycle.expired_error(name, expired)
        spending = self._p.spending
        return spending.throttled(name) if spending is not None else None

    def _sync_holds(self) -> None:
        """Queued work waits for the apps a budget throttles or an expiry pauses: one
        set of reasons, so one of them ending never releases an app the other holds."""
        want = self._budget_held | set(self._lapsed)
        for name in sorted(want - self._held):
            self._held.add(name)
            self._p.events.hold(name)
        for name in sorted(self._held - want):
            self._held.discard(name)
            self._p.events.release(name)

    async def _budget_tick(self, now: float) -> dict:
        """Judge the budgets at ``now`` and put their actions in force: throttled apps'
        queues wait (nothing consumed, nothing lost) until released; scaled-to-zero
        apps' instances stop and their minimum is 0 until released."""
        if self._p.spending is None:
            return {"notices": [], "throttled": [], "zeroed": []}
        _, sent = await asyncio.to_thread(self._p.spending.evaluate, now)
        applied = self._p.spending.applied
        for b in sent:
            self._p.governor.record(SYSTEM_BUDGETS, "budget.threshold", f"budget:{b['budget']}",
                                    "allowed", f"{b['percent']} % reached: {b['used']:g} of "
                                    f"{b['limit']:g}")
        for name in sorted(set(applied.throttled) - self._budget_held):
            self._budget_held.add(name)
            self._p.logs.platform(name, "", "budget exceeded: routes answer 429 and queued "
                                  "invocations wait until the budget allows again")
            self._p.governor.record(SYSTEM_BUDGETS, "budget.throttle", name, "allowed",
                                    f"budget {applied.throttled[name].budget.id}", app=name)
        for name in sorted(self._budget_held - set(applied.throttled)):
            self._budget_held.discard(name)
            self._p.governor.record(SYSTEM_BUDGETS, "budget.release", name, "allowed",
                                    "the budget allows it again", app=name)
        self._sync_holds()
        for name in sorted(applied.zeroed):
            app = self._p.registry.apps.get(name)
            if app is None or app.pool is None:
                continue
            target = app.pool.target
            if name not in self._zeroed:
                self._zeroed[name] = (target.min_instances, target.warm)
                app.pool.stop_all()
                self._p.governor.record(SYSTEM_BUDGETS, "budget.scale-to-zero", name,
                                        "allowed", f"budget {applied.zeroed[name].budget.id}",
                                        app=name)
            if target.min_instances or target.warm:  # a deploy meanwhile set them again
                self._zeroed[name] = (target.min_instances, target.warm)  # the new revision's
                app.pool.target = dataclasses.replace(target, min_instances=0, warm=())
        for name in sorted(set(self._zeroed) - set(applied.zeroed)):
            minimum, warm = self._zeroed.pop(name)
            app = self._p.registry.apps.get(name)
            if app is not None and app.pool is not None and not app.pool.target.min_instances:
                app.pool.target = dataclasses.replace(app.pool.target, min_instances=minimum,
                                                      warm=warm)
        return {"notices": sent, "throttled": sorted(applied.throttled),
                "zeroed": sorted(applied.zeroed)}

    async def _archive_and_remove(self, name: str, actor: Principal | None,
                                  reason: str) -> dict:
        app = self.app(name)
        routes = tuple((r.host, r.path) for r in app.revision_.routes)
        owner = app.manifest.metadata.owner

        def archive(served: App, manifests: list) -> str:
            dirs = {row.revision: Path(row.code_dir) for row in self._p.store.revisions(name)}
            dirs[served.revision] = served.code_dir
            return str(self._p.archiver.write(name, served.revision, served.manifest, dirs,
                                              manifests, reason))

        out = await self._p.deployer.delete(name, actor=actor, archive=archive,
                                            action="archive" if reason == "expired" else "delete")
        row = ArchiveRow(name, out["archive"], time.time(), reason, routes)
        await asyncio.to_thread(self._p.lifecycle.rows.put_archive, row)
        await asyncio.to_thread(self._p.lifecycle.rows.drop_clock, name)
        self._archived[name] = row
        event = {"specversion": "1.0", "type": f"skiff.app.{reason}",
                 "source": "skiff/governance/lifecycle", "id": self.new_request_id(),
                 "subject": name, "datacontenttype": "application/json",
                 "data": {"app": name, "owner": owner, "archive": out["archive"],
                          "restore": f"skiff restore {name}"}}
        await asyncio.to_thread(
            self._p.lifecycle.notify, event, f"Skiff app {name} is archived ({reason})",
            f"The app {name} is archived ({reason}) to {out['archive']}; its routes answer "
            f"410 Gone. Bring it back with:  skiff restore {name}\n", time.time())
        return out

    async def restore(self, name: str, *, actor: Principal | None = None) -> dict:
        """Bring an archived app back as it was: its revisions, the current one served
        again (through the deploy's policy check), its KV items and pending messages."""
        try:
            out = await self._restore(name, actor)
        except SkiffError as exc:
            self._audit_refusal(actor, "restore", name, exc)
            raise
        self._p.governor.record(actor, "restore", name, "allowed",
                                f"revision {out['revision']}: {out['kv_items']} KV item(s), "
                                f"{out['messages']} message(s)", app=name)
        return out

    async def _restore(self, name: str, actor: Principal | None) -> dict:
        import base64
        import shutil
        import tempfile

        from skiff.store import RevisionRow
        from skiff.store.registry import unpack_code

        row = await asyncio.to_thread(self._p.lifecycle.rows.archive, name)
        if row is None:
            raise NotFound(f"app {name} has no archive to restore (see `skiff archives`)",
                           code="archive_not_found")
        if name in self._p.registry.apps:  # said before the archive is read; the deploy checks again
            owner = self._p.registry.apps[name].manifest.metadata.owner
            from skiff.errors import Conflict

            raise Conflict(f"app {name} cannot be restored: another app of that name is "
                           f"deployed now (owner {owner or 'none'}); remove it first "
                           f"(`skiff rm {name}`), or ask its owner", code="name_taken",
                           owner=owner)
        got = await asyncio.to_thread(self._p.archiver.read, row.path)
        current = got.meta["current"]
        if current not in got.code:
            raise DeployError(f"the archive {row.path} has no code of revision {current}",
                              code="archive_invalid")
        disk_mb = next((r["manifest"]["spec"]["resources"].get("diskMB") for r in got.revisions
                        if r["revision"] == current), None)
        left_out: list[str] = []  # of the data directory: what would land outside it
        if got.data is not None and disk_mb and self._p.archiver.data is not None:
            # the data first: the revision's release step (a migration) runs against it
            left_out = await asyncio.to_thread(self._p.archiver.data.unpack, name, got.data,
                                               disk_mb, self._p.store.uid_for(name))
        tmp = Path(tempfile.mkdtemp(dir=self._config.home, prefix=".restore-"))
        try:
            src = await asyncio.to_thread(
                unpack_code, got.code[current], tmp / "app", max_bytes=self._config.max_app_bytes,
                max_files=self._config.max_app_files)
            out = await self._p.deployer.deploy(src, actor=actor, restoring=True)
        finally:
            await asyncio.to_thread(shutil.rmtree, tmp, True)
        store = self._p.store

        def put_back() -> tuple[int, int]:
            for rev in got.revisions:  # the older revisions, for rollbacks
                if rev["revision"] != out["revision"] and rev["revision"] in got.code:
                    store.put_revision(RevisionRow(
                        name, rev["revision"], rev["manifest"],
                        str(self._config.home / "revisions" / name / rev["revision"]),
                        rev["env_key"], rev["created"]))
                    if not store.has_bundle(name, rev["revision"]):
                        store.put_bundle(name, rev["revision"], got.code[rev["revision"]])
            now = time.time()
            items = 0
            for item in got.kv:
                left = None if item["expires_at"] is None else item["expires_at"] - now
                if left is None or left > 0:
                    self._p.kv.put(name, item["key"], item["value"], ttl=left)
                    items += 1
            for m in got.messages:
                self._p.broker.send(m["queue"], base64.b64decode(m["body"]),
                                    attributes=m["attributes"] or None)
            self._p.lifecycle.rows.drop_archive(name)
            # the app holds its data again: a copy outside it would outlive a later rm --purge
            Path(row.path).unlink(missing_ok=True)
            return items, len(got.messages)

        items, messages = await asyncio.to_thread(put_back)
        self._archived.pop(name, None)
        await asyncio.to_thread(self._p.lifecycle.deployed, name)
        return out | {"restored": name, "archive": row.path, "kv_items": items,
                      "messages": messages} | ({"data_left_out": left_out} if left_out else {})

    async def renew(self, name: str, days: int, reason: str, *,
                    actor: Principal | None = None) -> dict:
        app = self.app(name)
        try:
            self._p.governor.may_remove(actor, app.manifest, "renew")
            expires = await asyncio.to_thread(self._p.lifecycle.renew, app.manifest, days)
        except SkiffError as exc:
            self._audit_refusal(actor, "renew", name, exc)
            raise
        if self._lapsed.pop(name, None) is not None:  # a paused app serves again at once
            self._sync_holds()
        self._p.governor.record(actor, "renew", name, "allowed",
                                f"{days} day(s): {reason}", app=name, expires=expires)
        return {"app": name, "days": days, "expires": expires, "reason": reason}

    def lifecycle_status(self, name: str) -> dict:
        return {"app": name} | self._p.lifecycle.status(self.app(name).manifest)

    def archives(self) -> list[dict]:
        return [{"app": r.app, "archive": r.path, "archived": r.archived, "reason": r.reason}
                for r in self._p.lifecycle.rows.archives()]

    def outbox(self) -> list[dict]:
        return self._p.lifecycle.rows.outbox()

    async def _load_archived(self) -> None:
        self._archived_at = time.monotonic()
        rows = await asyncio.to_thread(self._p.lifecycle.rows.archives)
        self._archived = {r.app: r for r in rows}

    def gone(self, host: str, path: str) -> SkiffError | None:
        """The 410 of an archived app's route (asked only when no app is routed there)."""
        if not self._archived:
            return None
        host = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else host.lower()
        names = [path.lstrip("/").split("/", 1)[0]]  # /<app>/ and <app>.localhost
        if host.endswith(".localhost"):
            names.append(host.removesuffix(".localhost"))
        for name in names:
            row = self._archived.get(name)
            if row is not None:
                return _gone(row)
        for row in self._archived.values():
            for rhost, rpath in row.routes:
                if (rhost or rpath) and (rhost is None or rhost == host) and (
                        path == rpath or path.startswith(rpath.rstrip("/") + "/")):
                    return _gone(row)
        return None

    def _audit_refusal(self, actor: Principal | None, action: str, target: str,
                       exc: SkiffError) -> None:
        decision = "denied" if exc.status in (401, 403, 409) or exc.code in (
            "owner_required", "unknown_owner", "hardcoded_secret") else "failed"
        app = target if target in self._p.registry.apps or action == "deploy" else None
        self._p.governor.record(actor, action, target, decision, f"{exc.code}: {exc.message}",
                                app=app, code=exc.code)

    @property
    def governor(self) -> Governor:
        return self._p.governor

    @property
    def access(self) -> Access:
        return self._p.access

    def app_manifest(self, name: str) -> Any:
        return self.app(name).manifest

    def revisions(self, name: str) -> list[dict]:
        current = self.app(name).revision
        return [{"revision": r.revision, "created": r.created, "current": r.revision == current,
                 "environment": r.env_key} for r in self._p.store.revisions(name)]

    def stop_instances(self, name: str) -> int:
        """Scale the app to zero now (in-flight requests finish first)."""
        app = self.app(name)
        return app.pool.stop_all() if app.pool else 0

    def invocations(self, name: str, limit: int) -> list[dict]:
        self.app(name)
        return self._p.store.invocations(name, limit)

    def logs(self, name: str, after: int, limit: int, stream: str | None, *,
             newest: bool = False, since: float | None = None,
             request_id: str | None = None) -> list[dict]:
        self.app(name)
        return self._p.store.logs(name, after, limit, stream, newest=newest, since=since,
                                  request_id=request_id)

    # -- what apps own, the operator's secrets and grants ----------------------------
    def kv_query(self, name: str, prefix: str, limit: int, cursor: str | None) -> dict:
        self.app(name)
        return self._p.services.op_kv_query(name, prefix, limit, cursor)

    def kv_get(self, name: str, key: str) -> dict | None:
        self.app(name)
        return self._p.services.op_kv_get(name, key)

    def kv_put(self, name: str, key: str, value: Any) -> dict:
        self.app(name)
        return self._p.services.op_kv_put(name, key, value)

    def secret_list(self) -> list[dict]:
        """Names and versions only: values never leave the store through the API."""
        return [{"name": i.name, "version": i.latest_version, "created": i.created,
                 "updated": i.updated} for i in self._p.secrets.list()]

    def secret_set(self, name: str, value: str, *, actor: Principal | None = None) -> int:
        version = self._p.secrets.set(name, value)
        self._p.governor.record(actor, "secret.rotate" if version > 1 else "secret.set",
                                f"secret:{name}", "allowed", f"version {version}")
        self._p.deployer.follow_secrets()
        return version

    def secret_delete(self, name: str, *, actor: Principal | None = None) -> int:
        removed = self._p.secrets.delete(name)
        self._p.governor.record(actor, "secret.delete", f"secret:{name}", "allowed",
                                f"{removed} version(s) removed")
        self._p.deployer.follow_secrets()
        return removed

    def async_status(self, invocation_id: str) -> dict:
        return self._p.events.status(invocation_id)

    def queues(self) -> list[dict]:
        return self._p.events.queues()

    def queue_known(self, queue: str) -> bool:
        """An app declares it (a trigger, spec.queues, an async destination), or the broker
        holds it (messages, a redrive policy, an earlier send)."""
        return self._p.events.owner(queue) is not None or any(
            q.name == queue for q in self._p.broker.queues())

    def _known(self, queue: str) -> None:
        if not queue.startswith("skiff:") and not self.queue_known(queue):  # skiff:* are ours
            raise NotFound(f"no queue named {queue!r}: see `skiff queues ls`; "
                           "`skiff queues send --create` makes one", code="queue_not_found",
                           queue=queue)

    def queue_send(self, queue: str, body: bytes, attributes: dict[str, str] | None,
                   delay: float, create: bool = False) -> str:
        if not create:
            self._known(queue)  # (a send to skiff:* is refused below as reserved)
        return self._p.events.send(queue, body, attributes, delay)

    def queue_peek(self, queue: str, limit: int) -> list[Any]:
        self._known(queue)
        return self._p.broker.peek(queue, limit)

    def queue_purge(self, queue: str) -> int:
        self._known(queue)
        return self._p.broker.purge(queue)

    def queue_redrive(self, queue: str, to: str | None) -> int:
        self._known(queue)
        if to is not None:
            self._known(to)
        return self._p.broker.redrive(queue, to)

    def publish(self, event: dict[str, Any]) -> dict:
        return self._p.events.publish(event)

    def route_grants(self) -> list[dict]:
        return self._p.store.route_grants()

    def grant_route(self, app: str, host: str | None, path: str) -> None:
        self._p.store.grant_route(app, host, path)

    def revoke_route(self, app: str, host: str | None, path: str) -> bool:
        revoked = self._p.store.revoke_route(app, host, path)
        if revoked:  # at once: the tenant, not the operator, decides when it redeploys
            self._p.deployer.withdraw_ungranted(app)
        return revoked

    def system(self) -> dict:
        return {"zygotes": self._p.launcher.stats(),
                "isolation": [layer.__dict__ for layer in self._p.support.layers()]}

    @property
    def memory_isolation(self) -> str:
        cgroups = self._p.launcher.cgroups
        return f"cgroup v{cgroups.version}" if cgroups.available else "rlimit"


def _gone(row: ArchiveRow) -> SkiffError:
    why = "expired (its TTL ran out)" if row.reason == "expired" else "was removed"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(row.archived))
    return Gone(f"app {row.app} {why} and is archived since {when}; its owner or an operator "
                f"can bring it back with `skiff restore {row.app}`", code="app_archived",
                app=row.app, archived=row.archived, restore=f"skiff restore {row.app}")


def _app_name(src: Path) -> str:
    """The name a refused upload gives itself, for its audit entry."""
    try:
        import yaml

        name = yaml.safe_load((src / "skiff.yaml").read_text())["metadata"]["name"]
        return name if isinstance(name, str) and len(name) <= 100 else "(unnamed app)"
    except Exception:  # noqa: BLE001 - any manifest that does not say is unnamed
        return "(unnamed app)"
