"""The platform as the gateway and the admin API see it (``gateway.facade.Facade``):
a few operations over the parts the composition root built and passed in."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from skiff import ipc as p
from skiff.bus import Broker
from skiff.config import Config
from skiff.egress import EgressProxy
from skiff.errors import SkiffError
from skiff.governance import Governor, Principal, Role, SecretStore
from skiff.governance.access import Access
from skiff.instance import Launcher
from skiff.instance.environments import DEFAULT
from skiff.instance.isolation import Support
from skiff.manifest.state_machine import load_state_machine, resource_kind
from skiff.observe import Observe
from skiff.platform.deploy import Deployer
from skiff.platform.follow import Follower
from skiff.platform.invoke import Invoker
from skiff.platform.logsink import LogSink
from skiff.platform.registry import App, Registry
from skiff.platform.sdkcalls import SdkCalls
from skiff.platform.views import describe
from skiff.platform.workflows import StepFunctions
from skiff.scheduler import Invocation, Stream
from skiff.sdk.services import Services
from skiff.storage import Storage
from skiff.store import KV, Store
from skiff.triggers import EventPlane

log = logging.getLogger(__name__)


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
    observe: Observe = dataclasses.field(default_factory=Observe)
    workflows: StepFunctions | None = None  # state machines and their executions


class Platform:
    def __init__(self, config: Config, parts: Parts) -> None:
        self._config = config
        self._p = parts
        self._ticker: asyncio.Task | None = None
        self.started = time.time()

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
                     stream: bool = False) -> p.Response | Stream:
        return await self._p.invoker.invoke(app, inv, stream=stream)

    async def accept(self, inv: Invocation) -> str:
        """Accept an async invocation durably (202); the event plane runs it."""
        return await self._p.events.accept(inv.app, inv.request, inv.traceparent)

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
                     actor: Principal | None = None, app: str | None = None) -> dict:
        """``app``: the name, when the caller knows it (the audit entry of a deploy
        that fails before its manifest loads names it)."""
        if self._p.workflows is not None and resource_kind(src) == "StateMachine":
            return await self._deploy_machine(src, actor)
        try:
            out = await self._p.deployer.deploy(src, allow_secret_findings=allow_secret_findings,
                                                actor=actor)
        except SkiffError as exc:
            self._audit_refusal(actor, "deploy", app or _app_name(src), exc)
            raise
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
            before = sfn.history.machine(manifest.name)
            row = await asyncio.to_thread(sfn.save, manifest.name, definition,
                                          manifest.spec.type)
        except SkiffError as exc:
            self._audit_refusal(actor, "deploy", _app_name(src), exc)
            raise
        changed = before is None or before.revision != row.revision
        self._p.governor.record(actor, "deploy", f"statemachine:{row.name}", "allowed",
                                f"revision {row.revision}" + ("" if changed else " (unchanged)"))
        return {"app": row.name, "kind": "StateMachine", "revision": row.revision,
                "changed": changed, "type": row.type}

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

    async def delete(self, name: str, *, actor: Principal | None = None) -> dict:
        try:
            out = await self._p.deployer.delete(name, actor=actor)
        except SkiffError as exc:
            self._audit_refusal(actor, "delete", name, exc)
            raise
        self._p.governor.record(actor, "delete", name, "allowed",
                                f"{out['kv_items']} KV item(s), {out['messages']} message(s)",
                                app=name)
        return out

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

    def queue_send(self, queue: str, body: bytes, attributes: dict[str, str] | None,
                   delay: float) -> str:
        return self._p.events.send(queue, body, attributes, delay)

    def queue_peek(self, queue: str, limit: int) -> list[Any]:
        return self._p.broker.peek(queue, limit)

    def queue_purge(self, queue: str) -> int:
        return self._p.broker.purge(queue)

    def queue_redrive(self, queue: str, to: str | None) -> int:
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


def _app_name(src: Path) -> str:
    """The name a refused upload gives itself, for its audit entry."""
    try:
        import yaml

        name = yaml.safe_load((src / "skiff.yaml").read_text())["metadata"]["name"]
        return name if isinstance(name, str) and len(name) <= 100 else "(unnamed app)"
    except Exception:  # noqa: BLE001 - any manifest that does not say is unnamed
        return "(unnamed app)"
