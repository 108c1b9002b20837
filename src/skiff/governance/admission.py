"""The deploy gate: who may deploy what, and the policies every deploy passes.

:class:`Governor` is the one object the Deployer asks (``admit`` before anything
of a deploy or rollback is stored, ``may_remove`` before a delete) and the admin
API authenticates with. It answers with an :class:`Admission` (its ``verdict``
is "allowed" today; an approval step will add "pending") or raises:

    422 owner_required   identities are enabled and metadata.owner is missing
    422 unknown_owner    metadata.owner names no known user or group (lists those that exist)
    409 owner_conflict   the name belongs to another owner (names it)
    403 not_owner        a developer names an owner it is not, or removes an app not its own
    403 role_required    the caller's role is below the one needed (names it)
    403 policy_denied    deny policies refuse it (each id and message)
    422 quota_exceeded   over the owner's quota (skiff.governance.quotas; names the limit
                         and the use), unless approvals are on: then it waits as quota:LIMIT

Policies: the built-in pack, then ``$SKIFF_HOME/policies/*.yaml`` (files an
operator edits, re-read when they change, and those ``skiff policy apply``
writes there). A file that does not load stops every deploy (fail closed)
with its file, line and column until it is fixed; running apps keep serving.
When the set changes, every running app is re-evaluated and its violations
listed (``violations()``), nothing stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from skiff.errors import Conflict, ManifestError, SkiffError
from skiff.governance.advisories import NOT_AUDITED, Audit
from skiff.governance.approvals import Approvals
from skiff.governance.audit import AuditEntry, AuditLog
from skiff.governance.identity import BOOTSTRAP, Identities, NotOwner, Principal, Role
from skiff.governance.policy import (
    Decision,
    Policy,
    PolicyDenied,
    PolicyError,
    builtin_policies,
    denials,
    evaluate,
    parse_policies,
)
from skiff.governance.policy import warnings as policy_warnings
from skiff.governance.quotas import Quota, excess, refusal
from skiff.governance.secrets import parse_ref
from skiff.manifest import Manifest
from skiff.manifest.state_machine import StateMachineManifest

log = logging.getLogger(__name__)

#: owners named in an unknown_owner error: enough to spot a typo, not a directory dump
_OWNERS_LISTED = 50
#: how long a running app's violations are reused: what they depend on besides the
#: policies and the revision (secrets, another node's identity changes) is not
#: watched, so a listing is at most this stale; re-evaluating a thousand apps costs
#: seconds, not something to do on every GET
VIOLATIONS_TTL = 30.0


@dataclass(frozen=True)
class Limits:
    """What the built-in pack compares against (Config: SKIFF_POLICY_*)."""

    max_ttl_days: int = 90
    approved_hosts: tuple[str, ...] = ()  # empty: egress hosts are not restricted by policy
    approved_templates: tuple[str, ...] = ()  # empty: templateRef is not restricted


@dataclass(frozen=True)
class Admission:
    verdict: str  # "allowed", or "pending" (skiff.governance.approvals)
    decisions: tuple[Decision, ...] = ()
    #: (old owner, new owner) when the deploy hands the app to another owner
    owner_change: tuple[str, str] | None = None
    #: the secrets the app references: the old owner may know their values
    secrets: tuple[str, ...] = ()
    #: "pending": the scopes it asks for that need an operator's approval
    requested: tuple[str, ...] = ()
    #: the dependency audit the policies saw
    dependencies: Audit = NOT_AUDITED

    @property
    def warnings(self) -> list[dict]:
        return [d.to_dict() for d in policy_warnings(self.decisions)]

    def result(self) -> dict:
        """What the deploy result says of it."""
        out: dict = {"policy": {"verdict": self.verdict, "warnings": self.warnings,
                                "audit": [d.to_dict() for d in self.decisions
                                          if not d.allowed and d.enforcement == "audit"]}}
        if self.dependencies.status != "none":
            deps = self.dependencies.to_input()
            out["dependencies"] = {k: deps[k] for k in ("status", "error", "counts",
                                                        "advisories")}
        if self.owner_change is not None:
            old, new = self.owner_change
            out["owner_changed"] = {
                "from": old, "to": new, "secrets": list(self.secrets),
                "message": f"the app passed from {old} to {new}" + (
                    ": rotate the secrets it uses, which its former owner may know: "
                    + ", ".join(f"`skiff secrets rotate {n}`" for n in self.secrets)
                    if self.secrets else "")}
        return out


class OwnerRequired(ManifestError):
    code = "owner_required"


class UnknownOwner(ManifestError):
    code = "unknown_owner"


class OwnerConflict(Conflict):
    code = "owner_conflict"


def host_of(entry: str) -> str:
    """The host part of a spec.egress entry (``*.x.com:443`` → ``*.x.com``)."""
    if entry.startswith("["):
        return entry[1:entry.index("]")] if "]" in entry else entry
    return entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry


def approved(host: str, patterns: Iterable[str]) -> bool:
    """Is ``host`` (maybe a ``*.`` wildcard itself) covered by an approved pattern?"""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if host == pattern or (pattern.startswith("*.") and fnmatchcase(host, pattern)):
            return True
    return False


def policy_input(manifest: Manifest, *, owner_known: bool, owner_groups: list[str],
                 actor: Principal, identities_enabled: bool, findings: list[dict],
                 findings_allowed: bool, secret_exists: Callable[[str], bool],
                 limits: Limits, dependencies: Audit = NOT_AUDITED) -> dict[str, Any]:
    """The one ``input`` every policy sees (documented field by field in the README's
    operator section). Pure over what it is given."""
    owner = manifest.metadata.owner or ""
    kind, _, name = owner.partition(":")
    secrets = []
    for s in manifest.spec.secrets:
        try:
            ref_name, version = parse_ref(s.ref)
            exists = secret_exists(ref_name)
        except SkiffError:
            ref_name, version, exists = "", None, False
        secrets.append({"name": s.name, "ref": s.ref, "secret": ref_name,
                        "version": version, "exists": exists})
    return {
        "app": manifest.name,
        "manifest": manifest.to_dict(),
        "owner": {"ref": owner, "kind": kind if name else "", "name": name,
                  "known": owner_known, "groups": owner_groups},
        "actor": {"name": actor.name, "role": actor.role.name, "groups": sorted(actor.groups)},
        "identities": {"enabled": identities_enabled},
        "findings": findings,
        "findingsAllowed": findings_allowed,
        "dependencies": dependencies.to_input(),
        "scopes": {
            "egress": [{"entry": e, "host": host_of(e),
                        "approved": approved(host_of(e), limits.approved_hosts)}
                       for e in manifest.spec.egress],
            "secrets": secrets,
        },
        "limits": {"maxTtlDays": limits.max_ttl_days,
                   "approvedHosts": list(limits.approved_hosts),
                   "approvedTemplates": list(limits.approved_templates)},
    }


@dataclass
class _PolicySet:
    policies: list[Policy] = field(default_factory=list)
    error: PolicyError | None = None
    signature: tuple = ()
    version: int = 0


class Governor:
    def __init__(self, identities: Identities, audit: AuditLog, *, policy_dir: Path,
                 limits: Limits, secret_exists: Callable[[str], bool],
                 running: Callable[[], Mapping[str, tuple[str, Manifest]]] = dict,
                 log_app: Callable[[str, str, str], None] | None = None,
                 approvals: Approvals | None = None, quota: Quota | None = None) -> None:
        """``running``: app name -> (revision, manifest) of what serves now;
        ``log_app(app, revision, line)`` tells an app's log of its violations."""
        self.identities = identities
        self.audit = audit
        self.approvals = approvals
        self.quota = quota or Quota()
        self.policy_dir = policy_dir
        self.limits = limits
        self._secret_exists = secret_exists
        self._running = running
        self._log_app = log_app or (lambda app, rev, line: None)
        self._lock = threading.RLock()
        self._evaluating = threading.Lock()  # compiled programs are not shared across threads
        self._set = _PolicySet()
        self._violations: dict[tuple[str, str, int], tuple[float, list[Decision]]] = {}
        self._builtins = builtin_policies()
        #: app -> the dependency audit of the revision that serves (re-evaluation uses it)
        self._audits: dict[str, Audit] = {}
        self._reload()

    # -- policies ------------------------------------------------------------------
    def _signature(self) -> tuple:
        if not self.policy_dir.is_dir():
            return ()
        out = []
        for path in sorted(self.policy_dir.glob("*.yaml")):
            try:
                st = path.stat()
            except OSError:
                continue
            out.append((path.name, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _reload(self) -> bool:
        """Re-read the policy files if they changed; True when the set changed."""
        with self._lock:
            signature = self._signature()
            if signature == self._set.signature and self._set.version:
                return False
            from skiff.governance.policy import load_policy_dir

            try:
                policies, error = load_policy_dir(self.policy_dir), None
            except PolicyError as exc:
                policies, error = [], exc
                log.warning("policies not loaded, every deploy is refused until fixed: %s",
                            exc.message)
            clash = {p.id for p in policies} & {p.id for p in self._builtins}
            if clash and error is None:
                error = PolicyError(f"policy id(s) {', '.join(sorted(clash))} are the built-in "
                                    "pack's; choose another id", code="invalid_policy")
            self._set = _PolicySet(policies, error, signature, self._set.version + 1)
            self._violations.clear()
            return True

    def policies(self) -> list[Policy]:
        self._reload()
        return [*self._builtins, *self._set.policies]

    def policy_error(self) -> PolicyError | None:
        self._reload()
        return self._set.error

    def apply(self, text: str, *, actor: Principal) -> list[Policy]:
        """Check ``text`` (YAML: a policy or a list) and store each policy as
        ``policies/<id>.yaml``; then every running app is re-evaluated."""
        try:
            return self._apply(text, actor)
        except SkiffError as exc:
            self.record(actor, "policy.apply", f"policy:{exc.details.get('policy', '?')}",
                        "denied", f"{exc.code}: {exc.message}")
            raise

    def _apply(self, text: str, actor: Principal) -> list[Policy]:
        actor.require(Role.admin, "changing policies")
        parsed = parse_policies(text, source="api")
        import yaml

        with self._lock:
            for p in parsed:
                if p.id in {b.id for b in self._builtins}:
                    raise PolicyError(f"policy id {p.id} is the built-in pack's; choose another",
                                      policy=p.id)
                owner = self._file_of(p.id)
                if owner is not None and owner.name != f"{p.id}.yaml":
                    raise PolicyError(f"policy {p.id} is defined in {owner}; edit that file",
                                      policy=p.id, code="policy_in_file", status=409)
            self.policy_dir.mkdir(parents=True, exist_ok=True)
            for p in parsed:
                body = {k: v for k, v in p.to_dict().items() if k != "source"}
                path = self.policy_dir / f"{p.id}.yaml"
                tmp = path.with_suffix(".yaml.tmp")
                tmp.write_text(yaml.safe_dump(body, sort_keys=False))
                tmp.replace(path)
                self.record(actor, "policy.apply", f"policy:{p.id}", "allowed",
                            f"{p.enforcement}: {p.expression}")
            self._after_change()
        return parsed

    def remove(self, policy_id: str, *, actor: Principal) -> None:
        try:
            self._remove(policy_id, actor)
        except SkiffError as exc:
            self.record(actor, "policy.rm", f"policy:{policy_id}", "denied",
                        f"{exc.code}: {exc.message}")
            raise

    def _remove(self, policy_id: str, actor: Principal) -> None:
        actor.require(Role.admin, "changing policies")
        with self._lock:
            path = self._file_of(policy_id)
            if path is None:
                from skiff.errors import NotFound

                raise NotFound(f"no policy {policy_id!r}; see `skiff policy ls`",
                               code="policy_not_found")
            if path.name != f"{policy_id}.yaml":
                raise PolicyError(f"policy {policy_id} is defined in {path} beside others; "
                                  "edit that file", policy=policy_id, code="policy_in_file",
                                  status=409)
            path.unlink()
            self.record(actor, "policy.rm", f"policy:{policy_id}", "allowed", "removed")
            self._after_change()

    def _file_of(self, policy_id: str) -> Path | None:
        if not self.policy_dir.is_dir():
            return None
        for path in sorted(self.policy_dir.glob("*.yaml")):
            try:
                if any(p.id == policy_id for p in parse_policies(path.read_text(),
                                                                 source=str(path))):
                    return path
            except PolicyError:
                if path.name == f"{policy_id}.yaml":
                    return path
        return None

    def _after_change(self) -> None:
        if self._reload():
            self.reevaluate()

    # -- evaluation --------------------------------------------------------------------
    def _input(self, manifest: Manifest, actor: Principal, findings: list[dict],
               findings_allowed: bool, dependencies: Audit | None) -> dict[str, Any]:
        owner = manifest.metadata.owner
        if dependencies is None:  # a running app: the audit its deploy had
            dependencies = self._audits.get(manifest.name, NOT_AUDITED)
        return policy_input(manifest, owner_known=self.identities.owner_known(owner),
                            owner_groups=self.identities.owner_groups(owner), actor=actor,
                            identities_enabled=self.identities.enabled, findings=findings,
                            findings_allowed=findings_allowed,
                            secret_exists=self._secret_exists, limits=self.limits,
                            dependencies=dependencies)

    def evaluate(self, manifest: Manifest, *, actor: Principal = BOOTSTRAP,
                 findings: list[dict] | None = None, findings_allowed: bool = False,
                 dependencies: Audit | None = None) -> list[Decision]:
        policies = self._judging("MicroApp")
        given = self._input(manifest, actor, findings or [], findings_allowed, dependencies)
        with self._evaluating:
            return evaluate(policies, given)

    def _judging(self, kind: str) -> list[Policy]:
        policies = [p for p in self.policies() if kind in p.kinds]
        if self._set.error is not None:
            raise PolicyDenied(f"deploys are refused until the policies load again: "
                               f"{self._set.error.message}", code="policy_load_failed",
                               **self._set.error.details)
        return policies

    def admit_machine(self, manifest: StateMachineManifest, *, actor: Principal | None,
                      owner: str | None) -> list[Decision]:
        """The policies of kind StateMachine on a machine's deploy (``owner``: its app's
        owner). Raises the refusal; otherwise the decisions (warnings for the author)."""
        actor = actor or BOOTSTRAP
        kind, _, name = (owner or "").partition(":")
        given = {"kind": "StateMachine", "app": manifest.name,
                 "manifest": manifest.model_dump(mode="json", by_alias=True),
                 "owner": {"ref": owner or "", "kind": kind if name else "", "name": name,
                           "known": self.identities.owner_known(owner),
                           "groups": self.identities.owner_groups(owner)},
                 "actor": {"name": actor.name, "role": actor.role.name,
                           "groups": sorted(actor.groups)},
                 "identities": {"enabled": self.identities.enabled}}
        policies = self._judging("StateMachine")
        with self._evaluating:
            decisions = evaluate(policies, given)
        denied = denials(decisions)
        if denied:
            raise PolicyDenied(
                f"deploy of state machine {manifest.name} denied by {len(denied)} polic"
                f"{'y' if len(denied) == 1 else 'ies'}:\n"
                + "\n".join(f"  {d.policy}: {d.message}" for d in denied),
                denials=[d.to_dict() for d in denied])
        return decisions

    def admit(self, manifest: Manifest, *, actor: Principal | None, current: Manifest | None,
              findings: Iterable[Any] = (), allowed_reason: str | None = None,
              action: str = "deploy", dependencies: Audit | None = None) -> Admission:
        """May ``actor`` deploy (or roll back to) ``manifest`` over ``current``?
        Raises the refusal; otherwise the decisions, with warnings for the author."""
        actor = actor or BOOTSTRAP
        actor.require(Role.developer, f"{action} of an app")
        if action != "deploy" and current is not None:  # a rollback acts on the app as it is
            self.may_remove(actor, current, action)
        self._check_owner(manifest, actor, current)
        found = [{"file": f.file, "line": f.line, "type": f.type} for f in findings]
        decisions = self.evaluate(manifest, actor=actor, findings=found,
                                  findings_allowed=bool(allowed_reason),
                                  dependencies=dependencies)
        denied = denials(decisions)
        if denied:
            lines = [f"  {d.policy}: {d.message}" for d in denied]
            extra: dict[str, Any] = {}
            if dependencies is not None and dependencies.advisories:
                lines += [f"    {a.package} {a.version}: {a.id} ({a.severity})"
                          + (f", fixed in {', '.join(a.fixed)}" if a.fixed else "")
                          for a in dependencies.advisories]
                extra["advisories"] = [a.to_dict() for a in dependencies.advisories]
            raise PolicyDenied(
                f"{action} of {manifest.name} denied by {len(denied)} polic"
                f"{'y' if len(denied) == 1 else 'ies'}:\n" + "\n".join(lines),
                denials=[d.to_dict() for d in denied], **extra)
        was = current.metadata.owner if current is not None else None
        change = (was, manifest.metadata.owner or "") if (
            current is not None and was and was != manifest.metadata.owner) else None
        used = tuple(sorted({parse_ref(s.ref)[0] for s in manifest.spec.secrets}))
        wanted = self.approvals.needed(manifest, current, actor, self.identities.enabled) \
            if self.approvals is not None and action == "deploy" else []
        wanted += self._over_quota(manifest, actor, action)
        return Admission("pending" if wanted else "allowed", tuple(decisions), change,
                         used if change else (), tuple(wanted),
                         dependencies if dependencies is not None else NOT_AUDITED)

    def serving(self, app: str, audit: Audit) -> None:
        """The revision audited as ``audit`` now serves ``app``: re-evaluations use it."""
        with self._lock:  # the violations cache is keyed by revision: nothing to drop
            self._audits[app] = audit

    def _over_quota(self, manifest: Manifest, actor: Principal, action: str) -> list[str]:
        """Raises quota_exceeded, or (approvals on, a deploy) returns the quota scopes an
        operator has to approve; the platform's own deploys (`skiff up`) are not counted."""
        if not self.quota.on or actor.via == "system":
            return []
        found = excess(self.quota, manifest, [m for _, m in self._running().values()])
        if not found:
            return []
        if (action == "deploy" and self.approvals is not None and self.approvals.enabled
                and self.identities.enabled):
            approved = self.approvals.rows.approved(manifest.name)
            return [e.scope for e in found if e.scope not in approved]
        raise refusal(manifest, found)

    def _check_owner(self, manifest: Manifest, actor: Principal, current: Manifest | None) -> None:
        if not self.identities.enabled:
            return  # the embedded default: only the bootstrap admin, owners are free text
        owner = manifest.metadata.owner
        name = manifest.name
        if not owner:
            raise OwnerRequired(
                f"app {name} has no metadata.owner; with identities enabled every app names "
                "its owner, user:NAME or group:NAME (anonymous apps are not provisioned)")
        if not self.identities.owner_known(owner):
            known = self.identities.owners()
            listed = ", ".join(known[:_OWNERS_LISTED]) + (" ..." if len(known) > _OWNERS_LISTED
                                                          else "")
            raise UnknownOwner(
                f"metadata.owner {owner!r} of app {name} is not a known owner; it must be "
                f"user:NAME or group:NAME, one of: {listed or '(none yet: `skiff users add`)'}",
                owner=owner, owners=known[:_OWNERS_LISTED])
        if actor.role >= Role.operator:
            return
        if current is not None:
            was = current.metadata.owner
            if not actor.owns(was):
                raise OwnerConflict(
                    f"app {name} belongs to {was}; {actor.name} may not deploy over it (pick "
                    "another name, or ask its owner or an operator)" if was else
                    f"app {name} has no owner: only an operator may deploy over it",
                    owner=was)
        if not actor.owns(owner):
            raise NotOwner(f"{actor.name} may name as owner only itself (user:{actor.user}) or "
                           f"one of its groups, not {owner}", owner=owner)

    def may_remove(self, actor: Principal | None, current: Manifest, action: str) -> None:
        """May ``actor`` delete (or otherwise act on) the app ``current`` serves?"""
        actor = actor or BOOTSTRAP
        actor.require(Role.developer, f"{action} of an app")
        if actor.role >= Role.operator or not self.identities.enabled:
            return
        owner = current.metadata.owner
        if not actor.owns(owner):
            raise NotOwner(f"only the owners of app {current.name} ({owner or 'none: operators'})"
                           f" or an operator may {action} it; {actor.name} is neither",
                           owner=owner)

    # -- violations of running apps -----------------------------------------------------
    def reevaluate(self) -> list[dict]:
        """Evaluate every running app again (after a policy change, at start) and
        tell each app's log of what it violates; nothing is stopped."""
        with self._lock:
            self._violations.clear()
        out = self.violations()
        for v in out:
            self._log_app(v["app"], v["revision"], f"policy {v['policy']} ({v['enforcement']}): "
                          f"{v['message']}; the app keeps serving")
        return out

    def violations(self) -> list[dict]:
        self._reload()
        out = []
        now = time.monotonic()
        for name, (revision, manifest) in sorted(self._running().items()):
            key = (name, revision, self.identities.version)
            with self._lock:
                cached = self._violations.get(key)
            if cached is not None and now - cached[0] < VIOLATIONS_TTL:
                decisions = cached[1]
            else:
                try:
                    decisions = [d for d in self.evaluate(manifest) if not d.allowed]
                except PolicyDenied as exc:
                    decisions = [Decision("policies", "deny", False, exc.message, exc.code)]
                with self._lock:
                    if cached is None and len(self._violations) > 4 * len(self._running()) + 64:
                        self._violations.clear()  # revisions and versions gone by
                    self._violations[key] = (now, decisions)
            out.extend({"app": name, "revision": revision, "owner": manifest.metadata.owner,
                        **d.to_dict()} for d in decisions)
        return out

    # -- audit -----------------------------------------------------------------------------
    def record(self, actor: Principal | None, action: str, target: str, decision: str,
               reason: str = "", *, app: str | None = None, **details: Any) -> None:
        try:
            self.audit.append(AuditEntry(actor=(actor or BOOTSTRAP).name, action=action,
                                         target=target, app=app, decision=decision,
                                         reason=reason, details=details))
        except Exception:  # the action happened: a failing audit write is logged loudly
            log.exception("audit entry %s %s by %s not written", action, target,
                          (actor or BOOTSTRAP).name)
