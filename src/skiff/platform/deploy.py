"""The deploy pipeline: validate, scan, store, trial-load, lock a :class:`Revision`
and switch to it; and what else makes or unmakes revisions (restore at start,
rollback, delete, secret rotation, following another node).

Every revision's code is stored twice: in this node's home
(``revisions/<app>/<revision>``, what instances run) and as a bundle in the
registry (what another node, or this one with an empty home, unpacks into the
same place). A deploy stores the bundle before it makes the revision current,
so no node hears of a revision whose code it cannot fetch."""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import dataclasses
import os
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import msgspec

from skiff import ipc as p
from skiff.config import Config
from skiff.egress import EgressListener, EgressPolicy, EgressProxy, ForbiddenEgressRule
from skiff.errors import Conflict, DeployError, InvocationError, NotFound, SkiffError
from skiff.gateway.static import StaticSite
from skiff.governance import (
    BOOTSTRAP,
    Admission,
    AdvisoryDB,
    Audit,
    Governor,
    Principal,
    SecretStore,
    pinned,
    scan_app,
)
from skiff.instance import Instance, Launcher, ZygoteSpec
from skiff.instance.environments import Environments
from skiff.instance.isolation import Support, plan_for, zygote_plan
from skiff.manifest import Manifest, content_hash, iter_app_files, load_manifest, parse_manifest
from skiff.platform.datadirs import DataDirs
from skiff.platform.inventory import check_claim
from skiff.platform.logsink import LogSink
from skiff.platform.registry import App, Registry, Revision
from skiff.platform.sdkcalls import SdkCalls
from skiff.platform.setup_steps import SetupSteps
from skiff.scheduler import Pool, Target, WarmWindow
from skiff.store import KV, RevisionRow, Store
from skiff.store.registry import pack_code, unpack_code
from skiff.triggers import EventPlane


class Deployer:
    def __init__(self, config: Config, *, store: Store, registry: Registry, launcher: Launcher,
                 envs: Environments, support: Support, secrets: SecretStore,
                 egress: EgressProxy, events: EventPlane, kv: KV, logs: LogSink,
                 sdk: SdkCalls, governor: Governor, data: DataDirs | None = None,
                 advisories: AdvisoryDB | None = None) -> None:
        self._config = config
        self._advisories = advisories or AdvisoryDB("off")
        self._store = store
        self._registry = registry
        self._launcher = launcher
        self._envs = envs
        self._support = support
        self._secrets = secrets
        self._egress = egress
        self._events = events
        self._kv = kv
        self._logs = logs
        self._sdk = sdk
        self._governor = governor
        self._data = data or DataDirs(config.home, root=support.root)
        self._steps = SetupSteps(config, support=support, cgroups=launcher.cgroups, logs=logs,
                                 uid_for=store.uid_for, egress_socket=self.egress_socket)
        self._listeners: dict[str, EgressListener] = {}
        self._secret_versions = self._secret_snapshot()
        self._run_dir = config.home / "run"
        self._run_dir.mkdir(mode=0o700, exist_ok=True)

    # -- restore ------------------------------------------------------------------
    async def restore(self) -> None:
        """Serve every app's current revision again (at start): from this node's disk,
        or unpacked from its bundle when this home does not have it (a new node)."""
        for name, revision in await asyncio.to_thread(self._store.apps):
            row = await asyncio.to_thread(self._store.revision, name, revision)
            if row is None:
                self._logs.platform(name, revision,
                                    f"revision {revision} is missing from the registry; "
                                    "app not served")
                continue
            try:
                app = await self._bring_up(row)
                # a revision deployed before bundles existed: other nodes need it now
                await asyncio.to_thread(self._store_bundle, name, revision, app.code_dir)
            except (SkiffError, OSError) as exc:
                self._logs.platform(name, revision, f"could not restore: {_reason(exc)}")
        grants = await asyncio.to_thread(self.grants)
        for name in list(self._registry.apps):  # once all are back: what overlaps whom
            self.withdraw_ungranted(name, grants)

    def grants(self) -> set[tuple[str, str | None, str]]:
        """Every route grant as (app, host, path) (blocking: the registry)."""
        return {(g["app"], g["host"], g["path"]) for g in self._store.route_grants()}

    def withdraw_ungranted(self, name: str,
                           grants: set[tuple[str, str | None, str]] | None = None) -> None:
        """Stop serving routes of ``name`` that overlap another app's and that no grant
        allows now (a revoked grant, or a grant gone since the deploy). ``grants``: as
        :meth:`grants` returns them, read once for many apps."""
        if grants is None:
            grants = self.grants()
        for route in self._registry.withdraw_ungranted(name, grants):
            app = self._registry.apps[name]
            where = " ".join(x for x in (route.host and f"host {route.host}",
                                         f"path {route.path or '/'}") if x)
            self._logs.platform(name, app.revision, f"route {where} is no longer served: it "
                                "overlaps other apps' traffic and no grant allows it")

    def close(self) -> None:
        for app in self._registry.apps.values():
            if app.pool:
                app.pool.close()
        self._data.close()

    # -- deploy -------------------------------------------------------------------
    async def deploy(self, src: Path, *, allow_secret_findings: str | None = None,
                     actor: Principal | None = None, restoring: bool = False,
                     progress: Callable[[str], None] | None = None) -> dict:
        """Validate, scan, install, trial-load and activate the app in ``src``.
        On any failure the previous revision keeps serving. ``restoring``: an archived
        app comes back, and only under a name no app has now."""
        try:
            return await self._deploy(src, allow_secret_findings=allow_secret_findings,
                                      actor=actor, restoring=restoring, progress=progress)
        except BaseException:
            await self._drop_orphan_data(src)
            raise

    async def _drop_orphan_data(self, src: Path) -> None:
        """A first deploy that failed (its release step, say) may have made a data
        directory: it goes, or whoever deploys the name next would find its data
        (restored data is still in its archive)."""
        try:
            name = (await asyncio.to_thread(load_manifest, src / "skiff.yaml")).name
        except SkiffError:
            return  # nothing was made for a manifest that does not load
        async with self._registry.lock(name):
            if name not in self._registry.apps and not self._store.revisions(name):
                await asyncio.to_thread(self._data.remove, name)

    async def _deploy(self, src: Path, *, allow_secret_findings: str | None,
                      actor: Principal | None, restoring: bool,
                      progress: Callable[[str], None] | None) -> dict:
        # reading and hashing every file is blocking work: off the loop, or an upload of a
        # big app stalls every other app's requests (measured: 3.9 s max latency)
        manifest = await asyncio.to_thread(load_manifest, src / "skiff.yaml")
        name = manifest.name
        policy = EgressPolicy.parse(manifest.spec.egress)
        problems = self._forbidden_egress(policy)
        if problems:  # the proxy would deny them anyway: say so now, not at the first call
            raise ForbiddenEgressRule("\n".join(problems), problems=problems)
        self._resolve_secrets(manifest)  # a missing secret fails the deploy, not the instance
        scanned = await asyncio.to_thread(scan_app, src, iter_app_files(src))
        findings = [f for f in scanned if f.severity == "deny"]
        warnings = [{"file": f.file, "line": f.line, "type": f.type, "severity": f.severity}
                    for f in scanned if f.severity != "deny"]  # in tests and sample data
        if findings and not allow_secret_findings:
            lines = [f"  {f.file}:{f.line}: {f.type}" for f in findings]
            raise DeployError(
                f"deploy of {name} rejected: {len(findings)} hard-coded credential(s) found:\n"
                + "\n".join(lines) + f"\n{findings[0].hint} (or deploy with "
                "--allow-secret-scan-findings REASON)", code="hardcoded_secret",
                findings=[{"file": f.file, "line": f.line, "type": f.type} for f in findings])
        audit = await self._audit(src)  # the locked requirements, before any policy
        async with self._registry.lock(name):
            digest = await asyncio.to_thread(content_hash, src, manifest)
            current = self._registry.apps.get(name)
            if current is None:  # a name a draft's claimer holds is theirs to deploy
                await asyncio.to_thread(check_claim, self._kv, name, manifest.metadata.owner,
                                        actor)
            if restoring and current is not None:
                raise Conflict(f"app {name} cannot be restored: another app of that name is "
                               f"deployed now (owner {current.manifest.metadata.owner or 'none'})"
                               f"; remove it first (`skiff rm {name}`), or ask its owner",
                               code="name_taken", owner=current.manifest.metadata.owner)
            # who may, and the policies: decided before anything is stored (off the loop:
            # evaluating the pack took ~18 ms)
            admission = await asyncio.to_thread(
                self._governor.admit, manifest, actor=actor,
                current=current.manifest if current else None, findings=findings,
                allowed_reason=allow_secret_findings, dependencies=audit)
            if current is not None and current.revision == digest:
                return deploy_result(current, changed=False) | admission.result()
            # held: what serves now serves on (a restore brings back what was approved)
            if admission.verdict == "pending" and not restoring:
                return await self._hold(src, name, admission, actor)
            self._check_ownership(manifest)  # before the work; again before switching
            # the socket must exist for the build and the trial; the old policy stays
            # until we switch
            listener = await self._egress_listener(name, policy)
            code_dir = await asyncio.to_thread(self._store_code, src, name, digest,
                                               self._build_step(manifest, digest, src))
            await asyncio.to_thread(self._data_dir, manifest)  # made off the loop (mkfs)
            zygote = await asyncio.to_thread(self._envs.resolve, code_dir, progress)
            if progress is not None:
                progress("build environment")
            zygote = self._zygote_for(manifest, digest, code_dir, zygote)
            trial = None
            stored = manifest.to_dict()
            if manifest.spec.handler:
                if progress is not None:
                    progress("start trial instance")
                try:
                    trial = await self._trial(manifest, digest, code_dir, zygote)
                except BaseException:
                    if zygote.preinit:  # its zygote (and what its init started) goes too
                        self._launcher.retire(zygote.key, grace=0)
                    raise
                # remember the detected kind: a restored or rolled-back revision needs it
                # before any instance runs (e.g. to invoke it with an event)
                stored["spec"]["kind"] = trial.kind

            def undo() -> None:  # a failed deploy leaves no trial, app zygote or new listener
                if trial is not None:
                    trial.kill()
                if zygote.preinit:
                    self._launcher.retire(zygote.key, grace=0)
                if current is None:
                    self._listeners.pop(name).close()

            try:  # spec.release, before the revision takes traffic
                await asyncio.to_thread(self._release, manifest, digest, code_dir, zygote)
            except BaseException:
                undo()
                raise
            try:  # before it is current: a node that hears of it must find its code
                await asyncio.to_thread(self._store_bundle, name, digest, code_dir)
            except BaseException:  # e.g. the database is away: the deploy fails whole
                undo()
                raise
            try:  # another app may have taken a route or queue while this one installed
                self._check_ownership(manifest)
            except SkiffError:
                undo()
                raise
            revision = Revision.lock(manifest, digest, code_dir, zygote,
                                     kind=trial.kind if trial is not None else None)
            self._store.put_revision(RevisionRow(name, digest, stored,
                                                 str(code_dir), zygote.key, time.time()))
            self._store.set_current(name, digest)
            app = self._activate(revision, trial=trial)
            self._governor.serving(name, audit)
            listener.policy = revision.egress
            self._logs.platform(name, digest, f"revision {digest} deployed ({app.kind})")
            if findings:
                self._logs.platform(name, digest, f"deployed with {len(findings)} secret-scan "
                                    f"finding(s) allowed; reason: {allow_secret_findings}")
            for w in warnings:
                self._logs.platform(name, digest, f"secret scan warning (test or sample data): "
                                    f"{w['file']}:{w['line']}: {w['type']}")
            return (deploy_result(app, changed=True) | {"scan_warnings": warnings}
                    | admission.result())

    async def _audit(self, src: Path) -> Audit:
        """The dependency audit of the app in ``src`` (its requirements locked as the
        install will lock them; a failed lock fails the deploy as the install would)."""
        lock = await asyncio.to_thread(self._envs.lock, src)
        return await asyncio.to_thread(self._advisories.audit, pinned(lock))

    async def _hold(self, src: Path, name: str, admission: Admission,
                    actor: Principal | None) -> dict:
        """Keep the upload under ``pending/`` until an operator decides its request."""
        assert self._governor.approvals is not None
        where = self._config.home / "pending"
        where.mkdir(mode=0o700, exist_ok=True)
        held = Path(tempfile.mkdtemp(dir=where, prefix=f"{name}-"))
        await asyncio.to_thread(shutil.copytree, src, held / "app")
        row = await asyncio.to_thread(self._governor.approvals.hold, name, actor or BOOTSTRAP,
                                      list(admission.requested), str(held))
        self._logs.platform(name, "", f"deploy held for approval {row.id}: it asks for "
                            f"{', '.join(row.scopes)}")
        return {"app": name, "pending": True, "approval": row.id,
                "scopes": list(row.scopes), "changed": False,
                "message": f"the deploy asks for {', '.join(row.scopes)}, which an operator "
                           f"must approve: `skiff approvals approve {row.id}` (not by its "
                           "author); the previous revision serves until then"} \
            | admission.result()

    def _code_dir(self, name: str, revision: str) -> Path:
        """Where this node keeps the revision's code (the same on every node). The names
        may come from a row another node wrote: each must be one path component."""
        for part in (name, revision):
            if not part or part in (".", "..") or "/" in part or "\0" in part:
                raise DeployError(f"the registry names a revision {name!r}/{revision!r} that "
                                  "is not a directory name; it is not served here",
                                  code="bad_revision")
        return self._config.home / "revisions" / name / revision

    def _store_code(self, src: Path, name: str, revision: str,
                    build: Callable[[Path], None] | None = None) -> Path:
        dest = self._code_dir(name, revision)
        if dest.is_dir():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{revision}-"))
        try:
            for rel in iter_app_files(src):
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / rel, target)
            if build is not None:  # spec.build: what it writes is part of the revision
                build(tmp)
            # instances see their code read-only: compile it now, or every cold start would
            compileall.compile_dir(tmp, quiet=2, workers=1)
            tmp.chmod(0o755)  # instances run as the app's own uid and must read their code
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    # -- setup steps (skiff.platform.setup_steps) --------------------------------------
    def _build_step(self, manifest: Manifest, digest: str,
                    src: Path) -> Callable[[Path], None] | None:
        if not manifest.spec.build:
            return None

        def build(code: Path) -> None:
            python = self._envs.resolve(src).python  # as the trial's (cached by then)
            self._steps.build(manifest, digest, code, python, self._step_env(manifest, python))
        return build

    def _release(self, manifest: Manifest, digest: str, code_dir: Path,
                 zygote: ZygoteSpec) -> None:
        """spec.release for a revision about to take traffic (blocking)."""
        if manifest.spec.release:
            self._steps.release(manifest, digest, code_dir, zygote.python,
                                self._step_env(manifest, zygote.python),
                                self._data_dir(manifest))

    def _data_dir(self, manifest: Manifest) -> tuple[Path, str] | None:
        """The app's data directory and its volume's device, made or mounted when
        first asked for (blocking then; a dictionary look-up after)."""
        disk_mb = manifest.spec.resources.disk_mb
        if not disk_mb:
            return None
        return self._data.ensure(manifest.name, disk_mb, self._store.uid_for(manifest.name))

    def _step_env(self, manifest: Manifest, python: str) -> dict[str, str]:
        """A setup command's environment: the app's, with its environment's
        interpreter first on PATH (``python``, ``flask``, ``django-admin``)."""
        return {"PATH": f"{os.path.dirname(python)}:/usr/local/bin:/usr/bin:/bin",
                "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1", **manifest.spec.env,
                **self._resolve_secrets(manifest)}

    def _store_bundle(self, name: str, revision: str, code_dir: Path) -> None:
        """The revision's code into the registry, once (blocking: tar and the database)."""
        if not self._store.has_bundle(name, revision):
            self._store.put_bundle(name, revision, pack_code(code_dir))

    async def _code_here(self, row: RevisionRow) -> Path:
        """This node's copy of the revision's code: where a deploy here put it, or its
        bundle from the registry unpacked there (another node deployed it)."""
        dest = self._code_dir(row.app, row.revision)
        if await asyncio.to_thread(dest.is_dir):
            return dest
        data = await asyncio.to_thread(self._store.bundle, row.app, row.revision)
        if data is None:
            raise DeployError(f"the code of revision {row.revision} of app {row.app} is not on "
                              "this node, and the registry has no bundle of it (a revision "
                              "deployed before code bundles were stored is on the disk of the "
                              "node that deployed it only); deploy the app again",
                              code="bundle_missing")
        return await asyncio.to_thread(self._unpack, data, row.app, row.revision)

    def _unpack(self, data: bytes, name: str, revision: str) -> Path:
        """A bundle into the revision's directory, whole or not at all (blocking)."""
        dest = self._code_dir(name, revision)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{revision}-"))
        try:
            unpack_code(data, tmp, max_bytes=self._config.max_app_bytes,
                        max_files=self._config.max_app_files)
            compileall.compile_dir(tmp, quiet=2, workers=1)  # as _store_code, for this node
            tmp.chmod(0o755)
            try:
                tmp.rename(dest)
            except OSError:
                if not dest.is_dir():  # else another follower of this node got there first
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DeployError(f"the code bundle of revision {revision} of app {name} does not "
                              f"unpack: {exc}; deploy the app again",
                              code="bundle_invalid") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    def _load_message(self, manifest: Manifest, digest: str, code_dir: Path,
                      zygote: ZygoteSpec, *, with_secrets: bool = True) -> p.Load:
        spec = manifest.spec
        data_dir, device = self._data_dir(manifest) or (None, "")
        sandbox = plan_for(self._support, spec.isolation, uid=self._store.uid_for(manifest.name),
                           home=self._config.home, code_dir=code_dir, python=zygote.python,
                           tmp_mb=spec.resources.tmp_mb,
                           egress_socket=self.egress_socket(manifest.name),
                           data_dir=data_dir, data_device=device)
        env = dict(spec.env)
        if data_dir is not None:
            env["SKIFF_DATA_DIR"] = str(data_dir)
        if with_secrets:  # never into a zygote: every fork of it would share them
            env.update(self._resolve_secrets(manifest))
        return p.Load(app=manifest.name, revision=digest, code_dir=str(code_dir),
                      handler=spec.handler, kind=spec.kind, env=env,
                      memory_mb=spec.resources.memory_mb, cpu=spec.resources.cpu,
                      max_pids=spec.resources.max_pids, sandbox=sandbox,
                      region=self._config.aws_region)

    def egress_socket(self, app: str) -> str:
        return str(self._run_dir / f"egress-{app}.sock")

    async def _egress_listener(self, name: str, policy: EgressPolicy) -> EgressListener:
        """The app's one way out: a proxy listener on a unix socket that only its
        instances can reach (it is bind-mounted into their mount namespace). An
        existing listener keeps its policy: the caller switches it with the revision."""
        listener = self._listeners.get(name)
        if listener is None:
            listener = self._listeners[name] = await self._egress.serve_unix(
                self.egress_socket(name), name, policy, mode=0o666)
        return listener

    def _forbidden_egress(self, policy: EgressPolicy) -> list[str]:
        """The spec.egress entries that name what the operator has not allowed."""
        problems = []
        for index, rule in enumerate(policy.rules):
            why = self._egress.guard.check_rule(rule)
            if why is not None:
                problems.append(
                    f"spec.egress[{index}] \"{rule.entry}\" names {why}, which apps may not "
                    "reach; remove it, or ask the platform's operator to allow it "
                    f"(SKIFF_EGRESS_ALLOW={rule.entry})")
        return problems

    async def bring_up(self, row: RevisionRow) -> App:
        """Serve a revision another node deployed (its trial ran there); the caller
        holds the app's lock (``registry.lock``)."""
        return await self._bring_up(row)

    async def _bring_up(self, row: RevisionRow) -> App:
        """Serve a stored revision (at start, for a rollback, or deployed by another
        node): no trial, its instances start on demand. Its code comes from this
        node's disk or its bundle. Until it switches, the revision served before
        keeps serving; any failure before that leaves it so."""
        code_dir = await self._code_here(row)
        manifest = parse_manifest(row.manifest, source=f"{row.app}@{row.revision}",
                                  base_dir=code_dir)
        policy = EgressPolicy.parse(manifest.spec.egress)
        for problem in self._forbidden_egress(policy):  # allowed once; the proxy denies it now
            self._logs.platform(row.app, row.revision, f"{problem}; the egress proxy denies it")
        zygote = await asyncio.to_thread(self._envs.resolve, code_dir)
        await asyncio.to_thread(self._data_dir, manifest)  # mounted off the loop
        zygote = self._zygote_for(manifest, row.revision, code_dir, zygote)
        listener = await self._egress_listener(row.app, policy)
        old = self._registry.apps.get(row.app)
        kind = manifest.spec.kind or (old.kind if old else None)
        app = self._activate(Revision.lock(manifest, row.revision, code_dir, zygote, kind),
                             trial=None)
        listener.policy = app.revision_.egress
        return app

    # -- secrets ------------------------------------------------------------------
    def _resolve_secrets(self, manifest: Manifest) -> dict[str, str]:
        values = {}
        for secret in manifest.spec.secrets:
            try:
                values[secret.name] = self._secrets.resolve_ref(secret.ref).value
            except SkiffError as exc:
                raise DeployError(f"app {manifest.name} needs {secret.ref} for ${secret.name}: "
                                  f"{exc.message}", code="secret_not_found") from None
        return values

    def _secret_snapshot(self) -> dict[str, int]:
        return {info.name: info.latest_version for info in self._secrets.list()}

    def follow_secrets(self) -> None:
        """A secret changed (here or by `skiff secrets`): replace the instances of every
        app that uses it; they finish their requests first, so none fails."""
        now = self._secret_snapshot()
        if now == self._secret_versions:
            return
        changed = {n for n in now.keys() | self._secret_versions.keys()
                   if now.get(n) != self._secret_versions.get(n)}
        self._secret_versions = now
        for app in list(self._registry.apps.values()):
            uses = {s.ref.removeprefix("secret://") for s in app.manifest.spec.secrets}
            if app.pool is None or not uses & changed:
                continue
            try:
                target = self._target(app.revision_)
            except SkiffError as exc:
                self._logs.platform(app.name, app.revision, f"secret rotation: {exc.message}")
                continue
            app.pool.set_target(target)
            app.pool.rescale()
            self._logs.platform(app.name, app.revision, "secret rotated: instances replaced")

    def _zygote_for(self, manifest: Manifest, digest: str, code_dir: Path,
                    env: ZygoteSpec) -> ZygoteSpec:
        """Pre-initialized apps get a zygote of their own that has run their init,
        sandboxed before it did; other apps share their environment's zygote."""
        spec = manifest.spec
        if not spec.scaling.preinit or not spec.handler:
            return dataclasses.replace(env, profile=spec.isolation)
        load = self._load_message(manifest, digest, code_dir, env, with_secrets=False)
        root = self._support.root
        return dataclasses.replace(
            env, key=f"{env.key}:{manifest.name}@{digest}", preinit=msgspec.json.encode(load),
            sandbox=msgspec.json.encode(zygote_plan(self._support, load.sandbox))
            if load.sandbox else None,
            network=root and spec.isolation == "strict",
            uid=load.sandbox.uid if load.sandbox else 0, profile=spec.isolation,
            limits=(load.memory_mb, load.cpu, load.max_pids))

    async def _trial(self, manifest: Manifest, digest: str, code_dir: Path,
                     zygote: ZygoteSpec) -> Instance:
        try:
            inst = await self._launcher.instance(zygote)
        except InvocationError as exc:  # e.g. its zygote lied (zygote_untrusted): the deploy fails
            raise DeployError(f"app {manifest.name}: {exc.message}", code=exc.code) from None
        try:
            await inst.bind(self._load_message(manifest, digest, code_dir, zygote),
                            init_timeout=self._config.init_timeout)
        except DeployError:
            inst.kill()
            raise
        return inst

    def _target(self, rev: Revision) -> Target:
        s = rev.manifest.spec
        return Target(app=rev.name, revision=rev.digest, zygote=rev.zygote,
                      load=self._load_message(rev.manifest, rev.digest, rev.code_dir, rev.zygote),
                      concurrency=s.scaling.concurrency, min_instances=s.scaling.min_instances,
                      max_instances=s.scaling.max_instances, idle_timeout=s.scaling.idle_timeout,
                      max_queue=s.scaling.max_queue, timeout=s.resources.timeout,
                      init_timeout=self._config.init_timeout,
                      warm=tuple(WarmWindow(w.schedule, w.duration, w.min_instances)
                                 for w in s.scaling.warm))

    def _activate(self, rev: Revision, trial: Instance | None) -> App:
        spec = rev.manifest.spec
        old = self._registry.apps.get(rev.name)
        pool = None
        if spec.handler:
            target = self._target(rev)
            if old is not None and old.pool is not None:
                pool = old.pool
                pool.set_target(target)
            else:
                pool = Pool(target, self._launcher)
            if trial is not None:
                pool.adopt(trial, target)
            pool.rescale()  # after the trial counts toward minInstances
        elif old is not None and old.pool is not None:
            old.pool.close()
        static = (StaticSite(rev.code_dir / spec.static.dir, spec.static.path)
                  if spec.static else None)
        if old is not None and old.zygote.preinit and old.zygote.key != rev.zygote.key:
            self._launcher.retire(old.zygote.key, grace=old.manifest.spec.resources.timeout + 5)
        app = App(rev, pool, static)
        self._events.wire(rev.manifest)
        self._registry.put(app)
        return app

    def _check_ownership(self, manifest: Manifest) -> None:
        """Refuse a manifest whose routes or queues belong to another app (409).
        Synchronous, so a caller that switches right after it cannot race another deploy."""
        granted = {(g["host"], g["path"]) for g in self._store.route_grants(manifest.name)}
        self._registry.check_routes(manifest, granted)
        self._events.check_queues(manifest)

    # -- rollback and delete ------------------------------------------------------------
    async def rollback(self, name: str, revision: str | None = None, *,
                       actor: Principal | None = None) -> dict:
        app = self._registry.get(name)
        revisions = self._store.revisions(name)
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
        async with self._registry.lock(name):
            # no base_dir: the code may not be on this node yet (_bring_up checks it there)
            target = parse_manifest(row.manifest, source=f"{name}@{row.revision}")
            # no code on this node yet: no requirements to read, so no audit (it has none)
            audit = await self._audit(Path(row.code_dir))
            await asyncio.to_thread(self._governor.admit, target, actor=actor,
                                    current=app.manifest, action="rollback", dependencies=audit)
            self._check_ownership(target)
            # a new release: its own spec.release runs first (Heroku's and Fly's rule)
            code_dir = await self._code_here(row)
            target = parse_manifest(row.manifest, source=f"{name}@{row.revision}",
                                    base_dir=code_dir)
            zygote = await asyncio.to_thread(self._envs.resolve, code_dir)
            await asyncio.to_thread(self._release, target, row.revision, code_dir, zygote)
            app = await self._bring_up(row)
            self._governor.serving(name, audit)
            await asyncio.to_thread(self._store_bundle, name, row.revision, app.code_dir)
            self._store.set_current(name, row.revision)
        self._logs.platform(name, row.revision, f"rolled back to revision {row.revision}")
        return deploy_result(app, changed=True)

    async def delete(self, name: str, *, actor: Principal | None = None,
                     archive: Callable[[App, list[Manifest]], object] | None = None,
                     action: str = "delete") -> dict:
        """Delete the app and what it owns: its KV items (idempotency records are KV
        items), its queues with their messages and dead-letter queues, its pending
        async invocations, its schedules and rules, its routes and route grants, its
        revisions (rows and files) and its secret bindings (they are in its manifests;
        the secrets are the operator's and stay). Invocation records and logs stay for
        audit under ``<name>@deleted-<unix time>`` (log retention ages them out). A
        later app of the same name starts with nothing.

        ``archive`` (blocking, run off the loop) saves the app once it is no longer
        served and before anything of it is removed; if it fails, the app serves
        again and nothing is removed."""
        async with self._registry.lock(name):
            app = self._registry.get(name)
            self._governor.may_remove(actor, app.manifest, action)
            manifests = [app.manifest]
            for row in self._store.revisions(name):
                # a revision an older Skiff wrote may not parse: its queues are unknown
                # (no base_dir: its code may be on another node, and only its queues count)
                with contextlib.suppress(SkiffError):
                    manifests.append(parse_manifest(row.manifest,
                                                    source=f"{name}@{row.revision}"))
            await self._unserve(app)  # first: nothing new arrives while the data goes
            archived = None
            if archive is not None:
                try:
                    archived = await asyncio.to_thread(archive, app, manifests)
                except BaseException:
                    row = self._store.revision(name, app.revision)
                    if row is not None:  # nothing was removed: it serves again
                        await self._bring_up(row)
                    raise
            self._store.delete_app(name)  # first: a restart from here on does not bring it back
            self._store.release_uid(name)
            messages = await asyncio.to_thread(self._events.forget, name, manifests)
            items = await asyncio.to_thread(self._kv.clear, name)
            await asyncio.to_thread(shutil.rmtree, self._config.home / "revisions" / name, True)
            await asyncio.to_thread(self._data.remove, name)  # archived with the app above
            self._logs.platform(name, app.revision, f"app deleted ({items} KV item(s), "
                                f"{messages} queued message(s) and its revisions removed)")
            retired = await asyncio.to_thread(self._store.retire_records, name)
        return {"deleted": name, "kv_items": items, "messages": messages,
                "records_kept_as": retired,
                **({"archive": str(archived)} if archived is not None else {})}

    async def forget_deleted(self, name: str) -> None:
        """Another node deleted the app (and its data, which is shared): stop serving it
        here and remove what this node kept of it (its code, its uid on this host). The
        caller holds the app's lock."""
        app = self._registry.apps.get(name)
        if app is None:
            return
        await self._unserve(app)
        await asyncio.to_thread(shutil.rmtree, self._config.home / "revisions" / name, True)
        await asyncio.to_thread(self._data.remove, name)  # this node's copy (node-local)
        await asyncio.to_thread(self._store.forget_host_uid, name)
        self._logs.platform(name, app.revision, "app deleted by another node; no longer "
                            "served here")

    async def _unserve(self, app: App) -> None:
        """Stop serving the app on this node: routes, event wiring, instances, egress."""
        name = app.name
        self._registry.remove(name)
        self._events.unwire(name)
        self._sdk.forget(name)
        if app.pool:
            await _close_pool(app.pool)
        if app.zygote.preinit:
            self._launcher.retire(app.zygote.key, grace=0)
        listener = self._listeners.pop(name, None)
        if listener is not None:
            listener.close()


async def _close_pool(pool: Pool, timeout: float = 5.0) -> None:
    """Kill the pool's instances and wait until each one's last output and death
    are logged (its hooks' after_death is the last thing it does), so none lands
    after the app's records are retired."""
    ended = [inst.ended() for inst in [*pool.instances, *pool.draining]]
    pool.close()
    if ended:
        await asyncio.wait(ended, timeout=timeout)


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, SkiffError) else str(exc)


def deploy_result(app: App, *, changed: bool) -> dict:
    return {"app": app.name, "revision": app.revision, "kind": app.kind, "changed": changed,
            "path": f"/{app.name}/", "host": f"{app.name}.localhost"}
