"""The composition root: :func:`assemble` builds every part of the platform and
passes each its collaborators (the one module that knows them all; nothing
imports it but the CLI that runs it). :func:`serve` runs it: uvicorn (uvloop +
httptools) serving the gateway, then the app directories it was given deployed."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvicorn

from skiff import dashboard
from skiff.config import NODE_NAME, Config
from skiff.edge import ADMIN_RESERVE, EdgeLimits, EdgeProtocol, raise_fd_limit
from skiff.egress import EgressEvent, EgressProxy, Guard, fd_connection_budget
from skiff.egress import raise_fd_limit as raise_fd_limit_for_egress
from skiff.errors import SkiffError
from skiff.gateway import Gateway, Router, upload
from skiff.gateway.admin import build_admin
from skiff.governance import (
    SYSTEM_UP,
    AdvisoryDB,
    Governor,
    Identities,
    Limits,
    Role,
    SecretStore,
)
from skiff.governance.access import Access
from skiff.governance.approvals import Approvals
from skiff.governance.lifecycle import Lifecycle
from skiff.governance.oidc import OIDCSettings, OIDCVerifier
from skiff.governance.quotas import Quota
from skiff.instance import InstanceHooks, Launcher
from skiff.instance.cgroups import CgroupManager, owned_name
from skiff.instance.environments import Environments
from skiff.instance.isolation import Support
from skiff.manifest.state_machine import resource_kind
from skiff.notify import Notifier, NotifySettings
from skiff.observe import Metrics, Observe, OtlpMetrics, Terminal, Tracing
from skiff.observe.alerts import Alerting
from skiff.observe.cost import load_model
from skiff.observe.otlpmetrics import endpoint_of
from skiff.platform import Parts, Platform, Registry
from skiff.platform.archive import Archiver
from skiff.platform.busspans import PublishSpans
from skiff.platform.datadirs import DataDirs
from skiff.platform.deploy import Deployer
from skiff.platform.egressspans import EgressSpans
from skiff.platform.follow import Follower
from skiff.platform.hooks import PlatformHooks
from skiff.platform.invoke import Invoker
from skiff.platform.logsink import LogSink
from skiff.platform.observed import LiveState
from skiff.platform.sdkcalls import SdkCalls
from skiff.platform.spending import Spending
from skiff.platform.workflows import StepFunctions, WorkflowLimits
from skiff.sdk.services import Services
from skiff.serverlock import ServerLock
from skiff.storage import Storage, database_url, open_storage
from skiff.store import LogRetention
from skiff.store.uids import host_registry
from skiff.triggers import EventPlane

log = logging.getLogger("skiff")

_SKIP = {"node_modules", "__pycache__", "venv", "site-packages"}


def find_apps(dirs: list[Path]) -> list[Path]:
    """Every directory holding a skiff.yaml under ``dirs`` (not below another app)."""
    found: list[Path] = []
    for top in dirs:
        for root, subdirs, files in os.walk(top):
            if "skiff.yaml" in files:
                found.append(Path(root))
                subdirs.clear()
                continue
            subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and d not in _SKIP)
    return found


def say(line: str) -> None:
    print(line, flush=True)


def assemble(config: Config, *,
             launcher: Callable[[InstanceHooks], Launcher] | None = None,
             terminal: Terminal | None = None) -> Platform:
    """Build the platform's parts, each given what it uses, and the facade over them.
    ``launcher`` makes the launcher of instances from the platform's hooks (tests pass
    one of scripted instances; by default, zygotes in cgroups); ``terminal`` shows the
    access lines and app output (`skiff up` passes one)."""
    config.home.mkdir(parents=True, exist_ok=True)
    # storage: the one place stores are made, every backend chosen by SKIFF_DATABASE_URL
    storage = open_storage(database_url(config.home, config.database_url), home=config.home,
                           retention=LogRetention(
                               max_age_days=config.log_retention_days,
                               max_lines_per_app=config.log_max_lines_per_app,
                               max_bytes_per_app=int(config.log_max_mb_per_app * 1024 * 1024)),
                           uids=host_registry(config.uid_registry, config.home))
    store, kv, broker = storage.store, storage.kv, storage.broker
    secrets = SecretStore.open(config.home, rows=storage.secret_rows)

    registry = Registry(Router(), platform_host=config.host)
    metrics = Metrics() if config.metrics else None
    otlp_metrics = OtlpMetrics(metrics) if metrics is not None and endpoint_of(os.environ) else None
    observe = Observe(metrics, Tracing(), terminal, metrics_token=config.metrics_token,
                      otlp_metrics=otlp_metrics)
    logs = LogSink(store, lambda app: a.revision if (a := registry.apps.get(app)) else "",
                   observe)
    invoker = Invoker(registry, store, logs, observe)
    events = EventPlane(broker, storage.trigger_state, invoker,
                        log=lambda app, line: logs.platform(app, "", line),
                        max_pending_per_app=config.async_max_pending_per_app,
                        after_fire=observe.after_schedule_fire,
                        trace=PublishSpans(observe.tracing))
    if metrics is not None:
        metrics.sources = LiveState(registry, events)
    services = Services(kv, send=events.send, publish=events.publish,
                        may_send=events.check_send,
                        # built below (it calls these services): found when an app calls
                        workflows=lambda app, op, args: workflows.for_app(app, op, args))
    sdk = SdkCalls(services, observe.tracing, invoker.handler_traceparent)
    hooks = PlatformHooks(logs, sdk, observe)
    if launcher is None:
        cgroups = CgroupManager(owned_name())  # also removes those of dead platforms
        support = Support.probe(cgroups)
        launching = Launcher(cgroups, hooks=hooks, spares=config.spares,
                             namespaces=support.namespaces, init_timeout=config.init_timeout,
                             stop_grace=config.stop_grace)
    else:  # no processes: no sandbox either
        support = Support(root=False, seccomp=False, seccomp_reason="no instance processes",
                          cgroups="unavailable: no instance processes", cgroup_ok=False)
        launching = launcher(hooks)
    # connection spans only when spans are exported: else the proxy asks nothing per connection
    egress = egress_proxy(config, logs, observe, EgressSpans(
        registry, observe.tracing, invoker.handler_traceparent)
        if observe.tracing.recording else None)
    governor, access = governance(config, storage, secrets, registry, logs)
    data = DataDirs(config.home, root=support.root)  # apps' persistent data directories
    deployer = Deployer(
        config, store=store, registry=registry, launcher=launching,
        envs=Environments(config.envs_dir or config.home / "envs", offline=config.offline),
        support=support, secrets=secrets, egress=egress, events=events, kv=kv, logs=logs,
        sdk=sdk, governor=governor, data=data, advisories=AdvisoryDB(config.advisory_url))
    # what other nodes of the database deploy, roll back and delete, served here too
    follower = Follower(store, registry, deployer, logs)
    assert storage.workflows is not None
    workflows = StepFunctions(storage.workflows, registry, invoker,
                              limits=WorkflowLimits(max_payload_bytes=config.sfn_max_payload_bytes,
                                                    max_history_events=config.sfn_max_history_events),
                              max_running=config.sfn_max_running, services=services,
                              triggers=events, node=config.node_name)
    assert storage.lifecycle is not None
    # one notifier for TTL reminders and alerts (skiff.notify)
    notifier = Notifier(NotifySettings(config.notify_webhook, config.smtp_url,
                                       config.notify_email, config.notify_from,
                                       config.notify_slack_webhook))
    lifecycle = Lifecycle(
        storage.lifecycle, default_days=config.default_ttl_days,
        max_days=config.policy_max_ttl_days, publish=events.publish,
        notifier=notifier,
        running=lambda: {n: a.manifest for n, a in list(registry.apps.items())},
        on_expiry=config.on_expiry)
    assert storage.budgets is not None
    spending = Spending(registry=registry, store=store, rows=storage.budgets,
                        model=load_model(config.home, core_hour=config.cost_core_hour,
                                         gib_hour=config.cost_gib_hour),
                        lifecycle=lifecycle)
    return Platform(config, Parts(
        store=store, registry=registry, logs=logs, invoker=invoker, deployer=deployer,
        launcher=launching, support=support, secrets=secrets, egress=egress, events=events,
        broker=broker, services=services, sdk=sdk, kv=kv, storage=storage, governor=governor,
        access=access, follower=follower, observe=observe, workflows=workflows,
        lifecycle=lifecycle, archiver=Archiver(config.home, store=store, kv=kv, broker=broker,
                                                    data=data),
        spending=spending, budget_use=spending.use,
        alerting=Alerting(storage.alerts, notifier, node=config.node_name)
        if storage.alerts is not None else None))


def governance(config: Config, storage: Storage, secrets: SecretStore, registry: Registry,
               logs: LogSink) -> tuple[Governor, Access]:
    """Identities, the deploy gate with its policies, the audit trail, and sign-in."""
    oidc = None
    if config.oidc_issuer:
        if not config.oidc_audience:
            raise SkiffError("SKIFF_OIDC_ISSUER is set without SKIFF_OIDC_AUDIENCE: tokens "
                             "of any client of the issuer would be accepted", code="bad_config")
        try:
            roles = tuple((g, r) for g, _, r in (e.partition("=") for e in config.oidc_roles))
            for _, role in (*roles, ("", config.oidc_default_role)):
                Role.parse(role)
        except SkiffError as exc:
            raise SkiffError(f"SKIFF_OIDC_ROLES / SKIFF_OIDC_DEFAULT_ROLE: {exc.message}",
                             code="bad_config") from None
        oidc = OIDCVerifier(OIDCSettings(config.oidc_issuer, config.oidc_audience,
                                         config.oidc_groups_claim, roles,
                                         config.oidc_default_role))
    assert storage.identities is not None and storage.audit is not None
    assert storage.approvals is not None
    governor = Governor(
        Identities(storage.identities, oidc=oidc is not None), storage.audit,
        policy_dir=config.home / "policies",
        limits=Limits(config.policy_max_ttl_days, config.policy_approved_hosts,
                      config.policy_approved_templates),
        secret_exists=lambda name: secrets.rows.latest(name) is not None,
        running=lambda: {n: (a.revision, a.manifest) for n, a in list(registry.apps.items())},
        log_app=lambda app, revision, line: logs.platform(app, revision, line),
        approvals=Approvals(storage.approvals, enabled=config.approvals),
        quota=Quota(config.quota_apps, config.quota_memory_mb, config.quota_instances))
    return governor, Access(config.admin_token(), governor, oidc)


def egress_proxy(config: Config, logs: LogSink, observe: Observe | None = None,
                 spans: EgressSpans | None = None) -> EgressProxy:
    """The proxy with the operator's caps: descriptors first, since an app's idle
    connections hold the gateway's (the soft limit is often 1024 of a far larger hard one)."""
    raise_fd_limit_for_egress()
    budget = fd_connection_budget()
    if config.egress_max_connections > budget:
        log.warning("SKIFF_EGRESS_MAX_CONNECTIONS=%d would leave the gateway too few file "
                    "descriptors; using %d", config.egress_max_connections, budget)
    try:
        guard = Guard(allow=config.egress_allow,
                      platform_ports=[config.port] if config.port else [])
    except ValueError as exc:
        raise SkiffError(str(exc), code="bad_config", status=500) from None
    def on_event(ev: EgressEvent) -> None:
        logs.egress(ev)
        if observe is not None:  # a refusal at a cap reports those it folded in too
            observe.after_egress(ev.app, ev.allowed, 1 + (ev.suppressed or 0))
        if spans is not None:
            spans.after_egress(ev)

    return EgressProxy(
        on_event=on_event, guard=guard, parent_of=spans.parent_of if spans else None, idle_timeout=config.egress_idle_timeout,
        max_connections_per_app=config.egress_max_connections_per_app,
        max_connections=min(config.egress_max_connections or budget, budget))


async def deploy_all(platform: Platform, dirs: list[Path], *,
                     allow_secret_findings: str | None = None) -> None:
    found = find_apps(dirs)
    gate = asyncio.Semaphore(4)  # a thousand apps deploy a few at a time, not all at once

    async def one(d: Path) -> dict:
        async with gate:
            return await platform.deploy(d, actor=SYSTEM_UP,
                                         allow_secret_findings=allow_secret_findings)

    # state machines after the apps: a deploy refuses a task naming an app not deployed
    machines = [d for d in found if resource_kind(d) == "StateMachine"]
    apps = [d for d in found if d not in machines]
    results = await asyncio.gather(*(one(d) for d in apps), return_exceptions=True)
    results += await asyncio.gather(*(one(d) for d in machines), return_exceptions=True)
    apps += machines
    base = platform.config
    for d, res in zip(apps, results, strict=True):
        if isinstance(res, SkiffError):
            say(f"  ✗ {d}: {res.message}")
            tb = res.details.get("traceback")
            if tb:
                say("    " + str(tb).rstrip().replace("\n", "\n    "))
        elif isinstance(res, BaseException):
            say(f"  ✗ {d}: unexpected error: {res!r}")
        else:
            where = (f"skiff sfn start {res['app']}" if res.get("kind") == "StateMachine"
                     else f"http://{base.host}:{base.port}/{res['app']}/")
            say(f"  ✓ {res['app']:<20} {res['kind'] or '':<7} rev {res['revision']}  {where}")
            for w in res.get("scan_warnings", ()):
                say(f"    ! {w['file']}:{w['line']}: {w['type']} (in test or sample data: "
                    "a warning, not deployed code)")


async def serve(config: Config, dirs: list[Path],
                after_start: Callable[[Platform, Config], Awaitable[None]] | None = None, *,
                allow_secret_findings: str | None = None) -> None:
    if not NODE_NAME.fullmatch(config.node_name):  # it goes into a header and log lines
        raise SkiffError(f"the node name {config.node_name[:200]!r} must be 1-128 letters, "
                         "digits, '.', '_', ':' or '-', starting with a letter or digit "
                         "(--node-name, SKIFF_NODE_NAME)", code="bad_config", status=400)
    lock = ServerLock(config.home)
    lock.acquire()  # before any database is opened: a second server stops here, at once
    try:
        await _serve(config, dirs, after_start, allow_secret_findings)
    finally:
        lock.release()


async def _serve(config: Config, dirs: list[Path],
                 after_start: Callable[[Platform, Config], Awaitable[None]] | None,
                 allow_secret_findings: str | None = None) -> None:
    fds = raise_fd_limit()
    # half the open files for client connections: instances, their pipes and sockets,
    # the egress proxy and the databases need the rest (a slowloris at the fd limit
    # made every app and the admin API refuse connections)
    max_connections = config.max_connections or max(64, fds // 2 - ADMIN_RESERVE)
    config = dataclasses.replace(config, max_connections=max_connections)
    for name in upload.remove_stale(config.home):
        say(f"removed upload {name} left by a server that is gone")
    platform = assemble(config, terminal=Terminal() if config.access_log else None)
    limits = EdgeLimits(max_header_bytes=config.max_header_bytes,
                        header_timeout=config.header_timeout, max_connections=max_connections)
    # the dashboard sits beside the admin API and calls it, as the signed-in caller
    gateway = Gateway(platform, dashboard.mount(build_admin(platform, config.admin_token(),
                                                            limits.stats)))
    server = uvicorn.Server(uvicorn.Config(
        gateway, host=config.host, port=config.port, lifespan="on", log_level="warning",
        access_log=False, http=functools.partial(EdgeProtocol, limits=limits),  # type: ignore[arg-type]
        # the gateway applies forwarding headers itself, from configured proxies only
        proxy_headers=False, timeout_graceful_shutdown=5,
        # WebSockets (skiff.gateway.websocket): the sans-I/O protocol stops reading a
        # connection until its message was taken, which is the client side's back-pressure
        ws="websockets-sansio", ws_max_size=config.ws_max_message_bytes))
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            await task
            raise SystemExit(1)
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    config = dataclasses.replace(config, port=port)
    platform.config = config
    url = f"http://{config.host}:{port}"
    (config.home / "server.json").write_text(json.dumps({"url": url, "pid": os.getpid()}))
    say(f"Skiff {url}  (node {config.node_name}, home {config.home}, "
        f"memory isolation: {platform.memory_isolation})")
    if dirs:
        await deploy_all(platform, dirs, allow_secret_findings=allow_secret_findings)
    if after_start is not None:
        await after_start(platform, config)
    say(f"ready: {len(platform.app_names())} app(s) at {url}/<app>/  (admin API {url}/_skiff/api/docs)")
    await task


def run(config: Config, dirs: list[Path],
        after_start: Callable[[Platform, Config], Awaitable[None]] | None = None, *,
        allow_secret_findings: str | None = None) -> None:
    # the platform's own warnings (package loggers under "skiff") go to stderr, as
    # "skiff: ..." lines beside uvicorn's
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("skiff: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        import uvloop

        uvloop.run(serve(config, dirs, after_start, allow_secret_findings=allow_secret_findings))
    except ImportError:
        asyncio.run(serve(config, dirs, after_start, allow_secret_findings=allow_secret_findings))
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
