"""The platform: the registry of apps and revisions, their pools and routes,
and the deploy / rollback / invoke operations the gateway and admin API use."""

from __future__ import annotations

import asyncio
import compileall
import concurrent.futures
import contextlib
import dataclasses
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgspec

from skiff.config import Config
from skiff.egress import (
    EgressEvent,
    EgressListener,
    EgressPolicy,
    EgressProxy,
    ForbiddenEgressRule,
    Guard,
    fd_connection_budget,
    raise_fd_limit,
)
from skiff.errors import Conflict, DeployError, InvocationError, NotFound, SkiffError
from skiff.gateway.routing import Route, Router, conflict
from skiff.gateway.static import StaticSite
from skiff.governance import SecretStore, scan_app
from skiff.instance import Instance, Launcher, ZygoteSpec
from skiff.instance import protocol as p
from skiff.instance.cgroups import CgroupManager, owned_name
from skiff.instance.environments import DEFAULT, Environments
from skiff.instance.isolation import Support, plan_for, zygote_plan
from skiff.logtext import one_line
from skiff.manifest import Manifest, content_hash, iter_app_files, load_manifest, parse_manifest
from skiff.scheduler import Pool, Served, Target, WarmWindow
from skiff.sdk.services import Services
from skiff.storage import database_url, open_storage
from skiff.store import Invocation, LogRetention, RevisionRow
from skiff.store.uids import host_registry
from skiff.triggers import EventPlane

LOG_LINES_PER_SECOND = 1000
MAX_LOG_LINE = 16 * 1024
APP_STREAMS = frozenset({"stdout", "stderr"})  # all an instance may write; the rest is ours
# skiff.sdk calls run on threads (SQLite blocks). One FIFO for every app let a flood of
# 100,000 calls from one app hold another app's KV call for 25 s (2.4 ms before). So each
# app runs at most this many calls at once and the rest wait in its own queue: another
# app's call waits behind at most this many of the flooder's.
SDK_CALLS_PER_APP = 4
# threads for those calls, their own (not asyncio's default executor, which deploys use
# for scans and installs that take minutes): room for four apps at their cap at once
SDK_THREADS = 4 * SDK_CALLS_PER_APP


@dataclass
class App:
    name: str
    revision: str
    manifest: Manifest
    code_dir: Path
    zygote: ZygoteSpec
    pool: Pool | None  # None for a static-only app
    static: StaticSite | None
    kind: str | None


class Platform:
    def __init__(self, config: Config) -> None:
        self._config = config
        config.home.mkdir(parents=True, exist_ok=True)
        # every store from SKIFF_DATABASE_URL; the event plane keeps events.db itself for now
        self.storage = open_storage(database_url(config.home, config.database_url),
                                    home=config.home, trigger_state=False, retention=LogRetention(
            max_age_days=config.log_retention_days,
            max_lines_per_app=config.log_max_lines_per_app,
            max_bytes_per_app=int(config.log_max_mb_per_app * 1024 * 1024)),
            uids=host_registry(config.uid_registry, config.home))
        self.store = self.storage.store
        self.envs = Environments(config.envs_dir or config.home / "envs", offline=config.offline)
        self.cgroups = CgroupManager(owned_name())  # also removes those of dead platforms
        self.support = Support.probe(self.cgroups)
        self.launcher = Launcher(self.cgroups, spares=config.spares,
                                 namespaces=self.support.namespaces,
                                 init_timeout=config.init_timeout, stop_grace=config.stop_grace)
        self.launcher.on_log = self._on_log
        self.launcher.on_death = self._on_death
        self.router = Router()
        self.apps: dict[str, App] = {}
        self._deploy_locks: dict[str, asyncio.Lock] = {}
        self._ticker: asyncio.Task | None = None
        self.started = time.time()
        self.secrets = SecretStore.open(config.home, rows=self.storage.secret_rows)
        self._secret_versions = self._secret_snapshot()
        self.egress = self._egress_proxy(config)
        self._egress: dict[str, EgressListener] = {}
        self.run_dir = config.home / "run"
        self.run_dir.mkdir(mode=0o700, exist_ok=True)
        self.kv = self.storage.kv
        self.events = EventPlane(self.storage.broker,
                                 config.home / "events.db", self._invoke_named,
                                 log=lambda app, line: self.log_platform(app, "", line))
        self.services = Services(self.kv, send=self.events.send, publish=self.events.publish,
                                 may_send=self.events.check_send)
        self._sdk_threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=SDK_THREADS, thread_name_prefix="skiff-sdk")
        self._sdk_slots: dict[str, asyncio.Semaphore] = {}
        self.launcher.on_call = self._on_call

    @property
    def config(self) -> Config:
        return self._config

    @config.setter
    def config(self, config: Config) -> None:
        # the server replaces the config once it knows the port it bound (port 0 picks
        # one): the egress guard must keep apps off that port from then on
        self._config = config
        if config.port and hasattr(self, "egress"):
            self.egress.guard.platform_ports = {config.port}

    def _egress_proxy(self, config: Config) -> EgressProxy:
        """The proxy with the operator's caps: descriptors first, since an app's idle
        connections hold the gateway's (the soft limit is often 1024 of a far larger hard one)."""
        raise_fd_limit()
        budget = fd_connection_budget()
        if config.egress_max_connections > budget:
            print(f"skiff: SKIFF_EGRESS_MAX_CONNECTIONS={config.egress_max_connections} would "
                  f"leave the gateway too few file descriptors; using {budget}", file=sys.stderr)
        try:
            guard = Guard(allow=config.egress_allow,
                          platform_ports=[config.port] if config.port else [])
        except ValueError as exc:
            raise SkiffError(str(exc), code="bad_config", status=500) from None
        return EgressProxy(
            on_event=self._on_egress, guard=guard, idle_timeout=config.egress_idle_timeout,
            max_connections_per_app=config.egress_max_connections_per_app,
            max_connections=min(config.egress_max_connections or budget, budget))

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        for name, revision in self.store.apps():
            row = self.store.revision(name, revision)
            if row is None or not Path(row.code_dir).is_dir():
                self.log_platform(name, revision, f"revision {revision} is missing on disk; app not served")
                continue
            try:
                await self._bring_up(row)
            except (SkiffError, OSError) as exc:
                self.log_platform(name, revision, f"could not restore: {exc}")
        await self.launcher.warm(dataclasses.replace(DEFAULT, profile="strict"))
        self.events.start()
        self._ticker = asyncio.ensure_future(self._tick())

    async def stop(self) -> None:
        if self._ticker:
            self._ticker.cancel()
        await self.egress.aclose()
        self._sdk_threads.shutdown(wait=False, cancel_futures=True)
        await self.events.stop()
        self.secrets.close()
        self.kv.close()
        for app in self.apps.values():
            if app.pool:
                app.pool.close()
        await self.launcher.close()
        self.storage.close()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_seconds)
            self.follow_secrets()
            for app in list(self.apps.values()):
                if app.pool is not None:
                    try:
                        app.pool.rescale()
                    except Exception as exc:  # noqa: BLE001 - one app never stops the loop
                        print(f"skiff: scaling {app.name} failed: {exc}", file=sys.stderr)

    # -- deploy -------------------------------------------------------------------
    async def deploy(self, src: Path, *, allow_secret_findings: str | None = None) -> dict:
        """Validate, scan, install, trial-load and activate the app in ``src``.
        On any failure the previous revision keeps serving."""
        # reading and hashing every file is blocking work: off the loop, or an upload of a
        # big app stalls every other app's requests (measured: 3.9 s max latency)
        manifest = await asyncio.to_thread(load_manifest, src / "skiff.yaml")
        name = manifest.name
        policy = EgressPolicy.parse(manifest.spec.egress)
        problems = self._forbidden_egress(policy)
        if problems:  # the proxy would deny them anyway: say so now, not at the first call
            raise ForbiddenEgressRule("\n".join(problems), problems=problems)
        self._resolve_secrets(manifest)  # a missing secret fails the deploy, not the instance
        findings = await asyncio.to_thread(scan_app, src, iter_app_files(src))
        if findings and not allow_secret_findings:
            lines = [f"  {f.file}:{f.line}: {f.type}" for f in findings]
            raise DeployError(
                f"deploy of {name} rejected: {len(findings)} hard-coded credential(s) found:\n"
                + "\n".join(lines) + f"\n{findings[0].hint} (or deploy with "
                "--allow-secret-scan-findings REASON)", code="hardcoded_secret",
                findings=[{"file": f.file, "line": f.line, "type": f.type} for f in findings])
        lock = self._deploy_locks.setdefault(name, asyncio.Lock())
        async with lock:
            revision = await asyncio.to_thread(content_hash, src, manifest)
            current = self.apps.get(name)
            if current is not None and current.revision == revision:
                return self._deploy_result(current, changed=False)
            self._check_ownership(manifest)  # before the work; again before switching
            code_dir = await asyncio.to_thread(self._store_code, src, name, revision)
            # the socket must exist for the trial; the old policy stays until we switch
            listener = await self._egress_listener(name, policy)
            zygote = await asyncio.to_thread(self.envs.resolve, code_dir)
            zygote = self._zygote_for(manifest, revision, code_dir, zygote)
            trial = None
            stored = manifest.to_dict()
            if manifest.spec.handler:
                try:
                    trial = await self._trial(manifest, revision, code_dir, zygote)
                except BaseException:
                    if zygote.preinit:  # its zygote (and what its init started) goes too
                        self.launcher.retire(zygote.key, grace=0)
                    raise
                # remember the detected kind: a restored or rolled-back revision needs it
                # before any instance runs (e.g. to invoke it with an event)
                stored["spec"]["kind"] = trial.kind
            try:  # another app may have taken a route or queue while this one installed
                self._check_ownership(manifest)
            except SkiffError:
                if trial is not None:
                    trial.kill()
                if current is None:  # a new app that lost the race leaves no listener
                    self._egress.pop(name).close()
                raise
            self.store.put_revision(RevisionRow(name, revision, stored, str(code_dir),
                                                zygote.key, time.time()))
            self.store.set_current(name, revision)
            app = self._activate(manifest, revision, code_dir, zygote, trial=trial)
            listener.policy = policy
            self.log_platform(name, revision, f"revision {revision} deployed ({app.kind or 'static'})")
            if findings:
                self.log_platform(name, revision, f"deployed with {len(findings)} secret-scan "
                                  f"finding(s) allowed; reason: {allow_secret_findings}")
            return self._deploy_result(app, changed=True)

    def _store_code(self, src: Path, name: str, revision: str) -> Path:
        dest = self.config.home / "revisions" / name / revision
        if dest.is_dir():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{revision}-"))
        for rel in iter_app_files(src):
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, target)
        # instances see their code read-only: compile it now, or every cold start would
        compileall.compile_dir(tmp, quiet=2, workers=1)
        tmp.chmod(0o755)  # instances run as the app's own uid and must read their code
        tmp.rename(dest)
        return dest

    def _load_message(self, manifest: Manifest, revision: str, code_dir: Path,
                      zygote: ZygoteSpec, *, with_secrets: bool = True) -> p.Load:
        spec = manifest.spec
        sandbox = plan_for(self.support, spec.isolation, uid=self.store.uid_for(manifest.name),
                           home=self.config.home, code_dir=code_dir, python=zygote.python,
                           tmp_mb=spec.resources.tmp_mb,
                           egress_socket=self.egress_socket(manifest.name))
        env = dict(spec.env)
        if with_secrets:  # never into a zygote: every fork of it would share them
            env.update(self._resolve_secrets(manifest))
        return p.Load(app=manifest.name, revision=revision, code_dir=str(code_dir),
                      handler=spec.handler, kind=spec.kind, env=env,
                      memory_mb=spec.resources.memory_mb, cpu=spec.resources.cpu,
                      max_pids=spec.resources.max_pids, sandbox=sandbox)

    def egress_socket(self, app: str) -> str:
        return str(self.run_dir / f"egress-{app}.sock")

    async def _egress_listener(self, name: str, policy: EgressPolicy) -> EgressListener:
        """The app's one way out: a proxy listener on a unix socket that only its
        instances can reach (it is bind-mounted into their mount namespace). An
        existing listener keeps its policy: the caller switches it with the revision."""
        listener = self._egress.get(name)
        if listener is None:
            listener = self._egress[name] = await self.egress.serve_unix(
                self.egress_socket(name), name, policy, mode=0o666)
        return listener

    def _forbidden_egress(self, policy: EgressPolicy) -> list[str]:
        """The spec.egress entries that name what the operator has not allowed."""
        problems = []
        for index, rule in enumerate(policy.rules):
            why = self.egress.guard.check_rule(rule)
            if why is not None:
                problems.append(
                    f"spec.egress[{index}] \"{rule.entry}\" names {why}, which apps may not "
                    "reach; remove it, or ask the platform's operator to allow it "
                    f"(SKIFF_EGRESS_ALLOW={rule.entry})")
        return problems

    async def _bring_up(self, row: RevisionRow) -> App:
        """Serve a stored revision (at start, or for a rollback): no trial, its
        instances start on demand."""
        code_dir = Path(row.code_dir)
        manifest = parse_manifest(row.manifest, source=f"{row.app}@{row.revision}",
                                  base_dir=code_dir)
        policy = EgressPolicy.parse(manifest.spec.egress)
        for problem in self._forbidden_egress(policy):  # allowed once; the proxy denies it now
            self.log_platform(row.app, row.revision, f"{problem}; the egress proxy denies it")
        zygote = await asyncio.to_thread(self.envs.resolve, code_dir)
        zygote = self._zygote_for(manifest, row.revision, code_dir, zygote)
        listener = await self._egress_listener(row.app, policy)
        app = self._activate(manifest, row.revision, code_dir, zygote, trial=None)
        listener.policy = policy
        return app

    def _on_egress(self, ev: EgressEvent) -> None:
        app = self.apps.get(ev.app)
        if not ev.host:  # refused at accept by a cap, before any head: reported once a second
            line = f"connection refused, DENIED ({ev.reason}): {ev.detail}"
            if ev.suppressed:
                line += f" ({ev.suppressed} more refused since the previous such line)"
        else:
            verdict = "allowed" if ev.allowed else f"DENIED ({ev.reason})"
            line = (f"{ev.method} {ev.host}:{ev.port} {verdict} rule={ev.rule or '-'} "
                    f"up={ev.bytes_up}B down={ev.bytes_down}B {ev.duration_ms:.1f}ms")
            if ev.reason == "forbidden_address":
                line += (f"; {ev.detail}, which no spec.egress entry can allow "
                         "(only the operator's SKIFF_EGRESS_ALLOW)")
            elif not ev.allowed and ev.rule:
                line += f'; add "{ev.rule}" to spec.egress to allow it'
        self.store.log(ev.app, app.revision if app else "", "", "", "egress", line)

    # -- secrets ------------------------------------------------------------------
    def _resolve_secrets(self, manifest: Manifest) -> dict[str, str]:
        values = {}
        for secret in manifest.spec.secrets:
            try:
                values[secret.name] = self.secrets.resolve_ref(secret.ref).value
            except SkiffError as exc:
                raise DeployError(f"app {manifest.name} needs {secret.ref} for ${secret.name}: "
                                  f"{exc.message}", code="secret_not_found") from None
        return values

    def _secret_snapshot(self) -> dict[str, int]:
        return {info.name: info.latest_version for info in self.secrets.list()}

    def follow_secrets(self) -> None:
        """A secret changed (here or by `skiff secrets`): replace the instances of every
        app that uses it; they finish their requests first, so none fails."""
        now = self._secret_snapshot()
        if now == self._secret_versions:
            return
        changed = {n for n in now.keys() | self._secret_versions.keys()
                   if now.get(n) != self._secret_versions.get(n)}
        self._secret_versions = now
        for app in list(self.apps.values()):
            uses = {s.ref.removeprefix("secret://") for s in app.manifest.spec.secrets}
            if app.pool is None or not uses & changed:
                continue
            try:
                target = self._target(app.manifest, app.revision, app.code_dir, app.zygote)
            except SkiffError as exc:
                self.log_platform(app.name, app.revision, f"secret rotation: {exc.message}")
                continue
            app.pool.set_target(target)
            app.pool.rescale()
            self.log_platform(app.name, app.revision, "secret rotated: instances replaced")

    def _zygote_for(self, manifest: Manifest, revision: str, code_dir: Path,
                    env: ZygoteSpec) -> ZygoteSpec:
        """Pre-initialized apps get a zygote of their own that has run their init,
        sandboxed before it did; other apps share their environment's zygote."""
        spec = manifest.spec
        if not spec.scaling.preinit or not spec.handler:
            return dataclasses.replace(env, profile=spec.isolation)
        load = self._load_message(manifest, revision, code_dir, env, with_secrets=False)
        root = self.support.root
        return dataclasses.replace(
            env, key=f"{env.key}:{manifest.name}@{revision}", preinit=msgspec.json.encode(load),
            sandbox=msgspec.json.encode(zygote_plan(self.support, load.sandbox)) if load.sandbox else None,
            network=root and spec.isolation == "strict",
            uid=load.sandbox.uid if load.sandbox else 0, profile=spec.isolation,
            limits=(load.memory_mb, load.cpu, load.max_pids))

    async def _trial(self, manifest: Manifest, revision: str, code_dir: Path,
                     zygote: ZygoteSpec) -> Instance:
        try:
            inst = await self.launcher.instance(zygote)
        except InvocationError as exc:  # e.g. its zygote lied (zygote_untrusted): the deploy fails
            raise DeployError(f"app {manifest.name}: {exc.message}", code=exc.code) from None
        try:
            await inst.bind(self._load_message(manifest, revision, code_dir, zygote),
                            init_timeout=self.config.init_timeout)
        except DeployError:
            inst.kill()
            raise
        return inst

    def _target(self, manifest: Manifest, revision: str, code_dir: Path,
                zygote: ZygoteSpec) -> Target:
        s = manifest.spec
        return Target(app=manifest.name, revision=revision, zygote=zygote,
                      load=self._load_message(manifest, revision, code_dir, zygote),
                      concurrency=s.scaling.concurrency, min_instances=s.scaling.min_instances,
                      max_instances=s.scaling.max_instances, idle_timeout=s.scaling.idle_timeout,
                      max_queue=s.scaling.max_queue, timeout=s.resources.timeout,
                      init_timeout=self.config.init_timeout,
                      warm=tuple(WarmWindow(w.schedule, w.duration, w.min_instances)
                                 for w in s.scaling.warm))

    def _activate(self, manifest: Manifest, revision: str, code_dir: Path, zygote: ZygoteSpec,
                  trial: Instance | None) -> App:
        name = manifest.name
        spec = manifest.spec
        old = self.apps.get(name)
        pool = None
        if spec.handler:
            target = self._target(manifest, revision, code_dir, zygote)
            if old is not None and old.pool is not None:
                pool = old.pool
                pool.set_target(target)
            else:
                pool = Pool(target, self.launcher)
            if trial is not None:
                pool.adopt(trial, target)
            pool.rescale()  # after the trial counts toward minInstances
        elif old is not None and old.pool is not None:
            old.pool.close()
        static = StaticSite(code_dir / spec.static.dir, spec.static.path) if spec.static else None
        kind = trial.kind if trial is not None else (spec.kind or (old.kind if old else None))
        if old is not None and old.zygote.preinit and old.zygote.key != zygote.key:
            self.launcher.retire(old.zygote.key, grace=old.manifest.spec.resources.timeout + 5)
        app = App(name, revision, manifest, code_dir, zygote, pool, static,
                  kind if spec.handler else "static")
        self.apps[name] = app
        self.events.wire(manifest)
        self.router.set_app(name, self._routes(manifest))
        return app

    @staticmethod
    def _routes(manifest: Manifest) -> list[Route]:
        return [Route(manifest.name, host=r.host.lower() if r.host else None,
                      path=(r.path or "").rstrip("/")) for r in manifest.spec.routes]

    def _check_ownership(self, manifest: Manifest) -> None:
        """Refuse a manifest whose routes or queues belong to another app (409).
        Synchronous, so a caller that switches right after it cannot race another deploy."""
        name = manifest.name
        granted = {(g["host"], g["path"]) for g in self.store.route_grants(name)}
        for route in self._routes(manifest):
            if (route.host, route.path) in granted:
                continue
            owner = conflict(route, self.router.routes, self.router.apps - {name},
                             platform_hosts={self.config.host.lower()})
            if owner is not None:
                where = " ".join(x for x in (route.host and f"host {route.host}",
                                             f"path {route.path or '/'}") if x)
                raise Conflict(
                    f"route {where} of app {name} overlaps what {owner} serves; an app gets "
                    f"/{name}/, {name}.localhost and routes no other app has; an operator can "
                    f"allow this one with `skiff routes grant {name}"
                    + (f" --host {route.host}" if route.host else "")
                    + f" --path {route.path or '/'}`",
                    code="route_conflict", owner=owner, host=route.host, path=route.path or "/")
        self.events.check_queues(manifest)

    def _deploy_result(self, app: App, *, changed: bool) -> dict:
        return {"app": app.name, "revision": app.revision, "kind": app.kind, "changed": changed,
                "path": f"/{app.name}/", "host": f"{app.name}.localhost"}

    async def rollback(self, name: str, revision: str | None = None) -> dict:
        app = self.app(name)
        revisions = self.store.revisions(name)
        if revision is None:
            older = [r for r in revisions if r.revision != app.revision and r.created <= max(
                (x.created for x in revisions if x.revision == app.revision), default=0)]
            if not older:
                raise NotFound(f"app {name} has no revision before {app.revision} to roll back to",
                               code="revision_not_found")
            row = older[-1]
        else:
            matches = [r for r in revisions if r.revision.startswith(revision)]
            if len(matches) != 1:
                raise NotFound(f"app {name} has no revision {revision!r}; see `skiff ls {name}`",
                               code="revision_not_found")
            row = matches[0]
        async with self._deploy_locks.setdefault(name, asyncio.Lock()):
            self._check_ownership(parse_manifest(row.manifest, source=f"{name}@{row.revision}",
                                                 base_dir=Path(row.code_dir)))
            app = await self._bring_up(row)
            self.store.set_current(name, row.revision)
        self.log_platform(name, row.revision, f"rolled back to revision {row.revision}")
        return self._deploy_result(app, changed=True)

    async def delete(self, name: str) -> dict:
        """Delete the app and what it owns: its KV items (idempotency records are KV
        items), its queues with their messages and dead-letter queues, its pending
        async invocations, its schedules and rules, its routes and route grants, its
        revisions (rows and files) and its secret bindings (they are in its manifests;
        the secrets are the operator's and stay). Invocation records and logs stay for
        audit under ``<name>@deleted-<unix time>`` (log retention ages them out). A
        later app of the same name starts with nothing."""
        async with self._deploy_locks.setdefault(name, asyncio.Lock()):
            app = self.app(name)
            manifests = [app.manifest]
            for row in self.store.revisions(name):
                # a revision an older Skiff wrote may not parse: its queues are unknown
                with contextlib.suppress(SkiffError):
                    manifests.append(parse_manifest(row.manifest, source=f"{name}@{row.revision}",
                                                    base_dir=Path(row.code_dir)))
            # stop serving first: nothing new arrives while the data goes
            self.router.remove_app(name)
            self.events.unwire(name)
            del self.apps[name]
            self._sdk_slots.pop(name, None)
            if app.pool:
                await self._close_pool(app.pool)
            if app.zygote.preinit:
                self.launcher.retire(app.zygote.key, grace=0)
            listener = self._egress.pop(name, None)
            if listener is not None:
                listener.close()
            self.store.delete_app(name)  # first: a restart from here on does not bring it back
            self.store.release_uid(name)
            messages = await asyncio.to_thread(self.events.forget, name, manifests)
            items = await asyncio.to_thread(self.kv.clear, name)
            await asyncio.to_thread(shutil.rmtree, self.config.home / "revisions" / name, True)
            self.log_platform(name, app.revision, f"app deleted ({items} KV item(s), "
                              f"{messages} queued message(s) and its revisions removed)")
            retired = await asyncio.to_thread(self.store.retire_records, name)
        return {"deleted": name, "kv_items": items, "messages": messages,
                "records_kept_as": retired}

    @staticmethod
    async def _close_pool(pool: Pool, timeout: float = 5.0) -> None:
        """Kill the pool's instances and wait until each one's last output and death
        are logged (its on_death is the last thing it does), so none lands after the
        app's records are retired."""
        loop = asyncio.get_running_loop()
        gone: list[asyncio.Future] = []
        for inst in [*pool.instances, *pool.draining]:
            fut = loop.create_future()
            gone.append(fut)

            def died(i: Instance, prev=inst.on_death, fut=fut) -> None:  # noqa: ANN001
                if prev is not None:
                    prev(i)
                if not fut.done():
                    fut.set_result(None)
            inst.on_death = died
        pool.close()
        if gone:
            await asyncio.wait(gone, timeout=timeout)

    # -- invoke ---------------------------------------------------------------------
    def app(self, name: str) -> App:
        app = self.apps.get(name)
        if app is None:
            raise NotFound(f"no app named {name!r} is deployed; see `skiff ls`",
                           code="app_not_found")
        return app

    async def invoke(self, app: App, msg: p.HttpRequest | p.Event, trigger: str) -> p.Response:
        """Run one invocation and record it, whatever its outcome."""
        if app.pool is None:
            raise NotFound(f"app {app.name} serves only static files", code="route_not_found")
        t0 = time.perf_counter()
        served: Served | None = None
        status, error = 500, None
        try:
            resp, served = await app.pool.invoke(msg)
            status = resp.status
            return resp
        except SkiffError as exc:
            status, error = exc.status, exc.code
            raise
        finally:
            elapsed = (time.perf_counter() - t0) * 1000
            queued = served.queued_ms if served else 0.0
            inv = Invocation(
                id=msg.id, app=app.name, revision=served.revision if served else app.revision,
                instance=served.instance if served else "", trigger=trigger,
                cold=served.cold if served else False, init_ms=served.init_ms if served else 0.0,
                duration_ms=max(0.0, elapsed - queued), queued_ms=queued,
                memory_mb=app.manifest.spec.resources.memory_mb, status=status, error=error,
                ts=time.time())
            self.store.record(inv)
            if error:  # the invocation record has the rest; a log line per request cost
                # a third of the gateway's time in SQLite writes (profiled)
                self.log_platform(app.name, inv.revision, f"request failed: {error} "
                                  f"(status {status}, {inv.duration_ms:.2f} ms)",
                                  request_id=msg.id, instance=inv.instance)

    async def _invoke_named(self, name: str, msg: p.HttpRequest | p.Event,
                            trigger: str) -> p.Response:
        return await self.invoke(self.app(name), msg, trigger)

    async def _on_call(self, inst: Instance, call: p.Call) -> p.CallResult:
        """A skiff.sdk call from an instance: answered for the app that instance runs,
        in that app's fair share of the SDK threads (SDK_CALLS_PER_APP)."""
        slots = self._sdk_slots.get(inst.app)
        if slots is None:
            slots = self._sdk_slots[inst.app] = asyncio.Semaphore(SDK_CALLS_PER_APP)
        try:
            async with slots:  # FIFO: the app's calls queue here, not in the shared threads
                value = await asyncio.get_running_loop().run_in_executor(
                    self._sdk_threads, self.services.call, inst.app, call.op, call.args)
        except SkiffError as exc:
            return p.CallResult(id=call.id, ok=False, code=exc.code, message=exc.message,
                                status=exc.status)
        except (TypeError, ValueError) as exc:
            return p.CallResult(id=call.id, ok=False, code="bad_call", message=str(exc),
                                status=400)
        return p.CallResult(id=call.id, value=value)

    # -- logs -------------------------------------------------------------------
    def _on_log(self, inst: Instance, log: p.Log) -> None:
        """A line an instance wrote. Nothing in the frame is taken on trust (the app can
        write raw frames): the stream is its stdout or stderr, never one of the platform's
        (platform, egress); the request id is one the instance is handling, else blank;
        the line is one line (control characters escaped)."""
        # a rate limit per instance: an app printing in a loop must not fill the disk
        now = int(time.monotonic())
        if now != inst.log_window:
            inst.log_window, inst.log_lines = now, 0
        inst.log_lines += 1
        request_id = _handling(inst, log.request_id)
        if inst.log_lines > LOG_LINES_PER_SECOND:
            if inst.log_lines == LOG_LINES_PER_SECOND + 1:
                self.log_platform(inst.app, inst.revision, f"output over {LOG_LINES_PER_SECOND} "
                                  "lines/s: the rest of this second's lines are dropped",
                                  request_id=request_id, instance=inst.id)
            return
        stream = log.stream if log.stream in APP_STREAMS else "stdout"
        # cut before escaping (the frame may be megabytes) and after (escapes are longer)
        self.store.log(inst.app, inst.revision, inst.id, request_id, stream,
                       one_line(log.line[:MAX_LOG_LINE])[:MAX_LOG_LINE])

    def _on_death(self, inst: Instance) -> None:
        reason = inst.exit_reason.message if inst.exit_reason else "exited"
        if inst.draining and inst.exit_reason and inst.exit_reason.code == "instance_crashed":
            reason = "stopped (idle or replaced)"
        self.log_platform(inst.app, inst.revision, f"instance {inst.id}: {reason}",
                          instance=inst.id)

    def log_platform(self, app: str, revision: str, line: str, *, request_id: str = "",
                     instance: str = "") -> None:
        self.store.log(app, revision, instance, request_id, "platform", line)

    # -- views ------------------------------------------------------------------------
    def describe(self, app: App) -> dict:
        pool = app.pool
        stats = self.store.stats(app.name)
        created = list(pool.stats.created_at) if pool else []
        now = time.time()
        return {
            "name": app.name, "revision": app.revision, "kind": app.kind,
            "owner": app.manifest.metadata.owner, "path": f"/{app.name}/",
            "host": f"{app.name}.localhost",
            "instances": len(pool.instances) if pool else 0,
            "starting": pool.starting if pool else 0,
            "waiting": len(pool.waiters) if pool else 0,
            "instances_created": pool.stats.created if pool else 0,
            "churn_per_min": sum(1 for t in created if now - t <= 60),
            "throttled": pool.stats.throttled if pool else 0,
            "environment": app.zygote.key,
            **stats,
            "cold_start_ratio": round(stats["cold_starts"] / stats["requests"], 4)
            if stats["requests"] else 0.0,
        }

    def new_request_id(self) -> str:
        return str(uuid.uuid4())


def _handling(inst: Instance, request_id: str) -> str:
    """``request_id`` if ``inst`` is handling that invocation now, else "". An instance's
    invocations are the ones awaiting its answer; its log lines arrive before that answer
    on the same socket, so a line of a request it serves always finds it there."""
    if not request_id:
        return ""
    pending = getattr(inst, "_pending", None)  # the supervisor's; read only
    return request_id if pending is not None and request_id in pending else ""

