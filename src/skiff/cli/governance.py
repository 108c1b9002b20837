"""`skiff tokens | users | groups | policy | audit`: identities, policies and the
audit trail, over the admin API (``policy test`` runs locally, with no server)."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from skiff.config import Config
from skiff.errors import SkiffError

UrlOpt = Annotated[str | None, typer.Option("--url", help="Skiff server URL (default: from $SKIFF_HOME/server.json)")]
HomeOpt = Annotated[Path | None, typer.Option("--home", help="state directory ($SKIFF_HOME, default ./.skiff)")]

tokens_app = typer.Typer(help="Service tokens (admins): create, list, revoke.", no_args_is_help=True)
users_app = typer.Typer(help="Users and their groups (owners of apps).", no_args_is_help=True)
groups_app = typer.Typer(help="Groups (owners of apps).", no_args_is_help=True)
policy_app = typer.Typer(help="Deploy policies in CEL: test locally, list, apply, remove.",
                         no_args_is_help=True)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _out():  # noqa: ANN202 - the console of skiff.cli.app
    from skiff.cli.app import out

    return out


def _client(url: str | None, home: Path | None = None):  # noqa: ANN202
    from skiff.cli.client import Client

    return Client(url, home)


def duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` → seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match or float(match[1]) <= 0:
        raise SkiffError(f"expected a duration like 30d, 12h or 90m, got {text!r}",
                         code="bad_duration", status=400)
    return float(match[1]) * _UNITS[match[2]]


def since(text: str, now: float | None = None) -> float:
    """A point in time: a duration ago (``2h``) or an ISO date/time (local unless it
    says its zone)."""
    now = time.time() if now is None else now
    if re.fullmatch(r"\s*\d+(?:\.\d+)?\s*[smhdw]\s*", text):
        return now - duration(text)
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise SkiffError(f"--since takes a duration ago (2h, 7d) or an ISO time "
                         f"(2026-12-01T09:00), got {text!r}", code="bad_time", status=400) from None


def _when(ts: float | None) -> str:
    return "-" if not ts else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


# -- tokens ---------------------------------------------------------------------------
@tokens_app.command("create")
def tokens_create(user: Annotated[str, typer.Option("--user", help="who the token acts for")],
                  role: Annotated[str, typer.Option("--role", help="viewer, developer, operator or admin")],
                  expires: Annotated[str | None, typer.Option("--expires", help="e.g. 30d, 12h")] = None,
                  url: UrlOpt = None) -> None:
    """Make a service token. It is printed once, here: only its hash is kept."""
    body = {"user": user, "role": role,
            "expires_in": duration(expires) if expires else None}
    res = _client(url).json("POST", "/tokens", json=body)
    out = _out()
    out.print(f"[green]created[/] token {res['id']} for {res['user']} ({res['role']}"
              + (f", expires {_when(res['expires'])}" if res["expires"] else "") + ")")
    out.print("this is the only time it is shown; give it as SKIFF_ADMIN_TOKEN:", style="dim")
    print(res["token"])


@tokens_app.command("ls")
def tokens_ls(url: UrlOpt = None) -> None:
    """Every token's id, user, role and state (never the token)."""
    table = Table("id", "user", "role", "state", "created", "expires")
    for t in _client(url).json("GET", "/tokens"):
        table.add_row(t["id"], t["user"], t["role"], t["state"], _when(t["created"]),
                      _when(t["expires"]))
    _out().print(table)


@tokens_app.command("revoke")
def tokens_revoke(token_id: str, url: UrlOpt = None) -> None:
    """Revoke a token now; its next use is a 401 that says so."""
    _client(url).json("DELETE", f"/tokens/{token_id}")
    _out().print(f"[green]revoked[/] {token_id}")


# -- users and groups ------------------------------------------------------------------
@users_app.command("add")
def users_add(name: str,
              group: Annotated[list[str] | None, typer.Option("--group", "-g", help="a group (repeat for more)")] = None,
              url: UrlOpt = None) -> None:
    """Add a user (an owner: user:NAME), optionally to groups (each an owner: group:NAME)."""
    res = _client(url).json("POST", "/users", json={"name": name, "groups": group or []})
    verb = "added" if res["created"] else "updated"
    _out().print(f"[green]{verb}[/] user:{name}"
                 + (f" in {', '.join('group:' + g for g in res['groups'])}" if res["groups"] else ""))


@users_app.command("ls")
def users_ls(url: UrlOpt = None) -> None:
    table = Table("user", "groups", "created")
    for u in _client(url).json("GET", "/users"):
        table.add_row(u["name"], ", ".join(u["groups"]), _when(u["created"]))
    _out().print(table)


@users_app.command("rm")
def users_rm(name: str, url: UrlOpt = None) -> None:
    """Remove a user and its group memberships (revoke its tokens with `skiff tokens revoke`)."""
    _client(url).json("DELETE", f"/users/{name}")
    _out().print(f"[green]removed[/] user:{name}")


@groups_app.command("add")
def groups_add(name: str, url: UrlOpt = None) -> None:
    """Add a group, e.g. one whose members sign in with OIDC."""
    res = _client(url).json("POST", "/groups", json={"name": name})
    _out().print(f"[green]{'added' if res['created'] else 'exists'}[/] group:{name}")


@groups_app.command("ls")
def groups_ls(url: UrlOpt = None) -> None:
    table = Table("group", "members")
    for g in _client(url).json("GET", "/groups"):
        table.add_row(g["name"], ", ".join(g["members"]))
    _out().print(table)


# -- policies ----------------------------------------------------------------------------
def _decisions_table(decisions: list[dict]) -> Table:
    table = Table("policy", "enforcement", "result", "message")
    for d in decisions:
        result = "[green]pass[/]" if d["allowed"] else (
            "[red]deny[/]" if d["enforcement"] == "deny" else f"[yellow]{d['enforcement']}[/]")
        table.add_row(d["policy"], d["enforcement"], result, escape(d["message"]))
    return table


@policy_app.command("test")
def policy_test(directory: Annotated[Path, typer.Argument(help="the app directory")] = Path("."),
                policies: Annotated[Path | None, typer.Option("--policies", help="a policy directory (default $SKIFF_HOME/policies)")] = None,
                home: HomeOpt = None,
                as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Evaluate the built-in pack and a policy directory against an app, locally
    (no server). Exits 1 when a deny policy fails."""
    from skiff.governance import BOOTSTRAP, Limits, evaluate, policy_input, scan_app
    from skiff.governance.identity import parse_owner
    from skiff.governance.policy import builtin_policies, load_policy_dir
    from skiff.manifest import iter_app_files, load_manifest

    config = Config.resolve(home=home)
    manifest = load_manifest(directory / "skiff.yaml")
    found = [{"file": f.file, "line": f.line, "type": f.type}
             for f in scan_app(directory, iter_app_files(directory))]
    audit = _audit_locally(config, directory)
    pack = [*builtin_policies(), *load_policy_dir(policies or config.home / "policies")]
    given = policy_input(
        manifest, owner_known=parse_owner(manifest.metadata.owner) is not None, owner_groups=[],
        actor=BOOTSTRAP, identities_enabled=True, findings=found, findings_allowed=False,
        secret_exists=lambda name: True,
        limits=Limits(config.policy_max_ttl_days, config.policy_approved_hosts,
                      config.policy_approved_templates), dependencies=audit)
    decisions = [d.to_dict() for d in evaluate(pack, given)]
    denied = [d for d in decisions if not d["allowed"] and d["enforcement"] == "deny"]
    if as_json:
        print(json.dumps({"app": manifest.name, "decisions": decisions,
                          "dependencies": audit.to_input(), "denied": bool(denied)}, indent=2))
    else:
        out = _out()
        out.print(_decisions_table(decisions))
        for a in audit.advisories:
            fixed = f", fixed in {', '.join(a.fixed)}" if a.fixed else ""
            out.print(f"advisory {a.id} ({a.severity}): {a.package} {a.version}{fixed}")
        if audit.status == "unavailable":
            out.print(f"[yellow]dependency audit unavailable:[/] {escape(audit.error)}")
        out.print("checked locally: a well-formed owner counts as known and every secret "
                  "ref as existing; the server checks both at deploy", style="dim")
        out.print(f"[red]{manifest.name} would be denied[/]" if denied
                  else f"[green]{manifest.name} passes every deny policy[/]")
    if denied:
        raise typer.Exit(1)


def _audit_locally(config: Config, directory: Path):  # noqa: ANN202
    """The dependency audit a deploy of ``directory`` would get (its requirements
    locked as the server locks them)."""
    from skiff.governance import AdvisoryDB, pinned
    from skiff.instance.environments import Environments

    envs = Environments(config.envs_dir or config.home / "envs", offline=config.offline)
    return AdvisoryDB(config.advisory_url).audit(pinned(envs.lock(directory)))


@policy_app.command("ls")
def policy_ls(url: UrlOpt = None) -> None:
    """The policies every deploy passes, built-in first."""
    res = _client(url).json("GET", "/policies")
    table = Table("id", "enforcement", "source", "expression")
    for p in res["policies"]:
        table.add_row(p["id"], p["enforcement"], p["source"], escape(p["expression"].strip()))
    out = _out()
    out.print(table)
    if res.get("error"):
        out.print(f"[red]policies do not load (every deploy is refused):[/] "
                  f"{escape(res['error']['message'])}")


@policy_app.command("apply")
def policy_apply(file: Annotated[Path, typer.Argument(help="a YAML file of one policy or a list")],
                 url: UrlOpt = None) -> None:
    """Store policies on the server (admins); every running app is re-evaluated."""
    text = sys.stdin.read() if str(file) == "-" else file.read_text()
    res = _client(url).json("POST", "/policies", json={"text": text})
    out = _out()
    out.print(f"[green]applied[/] {', '.join(res['applied'])}")
    _print_violations(res["violations"])


@policy_app.command("rm")
def policy_rm(policy_id: str, url: UrlOpt = None) -> None:
    res = _client(url).json("DELETE", f"/policies/{policy_id}")
    _out().print(f"[green]removed[/] {policy_id}")
    _print_violations(res["violations"])


@policy_app.command("violations")
def policy_violations(url: UrlOpt = None,
                      as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """What running apps violate now (nothing is stopped)."""
    found = _client(url).json("GET", "/policies/violations")
    if as_json:
        print(json.dumps(found, indent=2))
    else:
        _print_violations(found)


def _print_violations(found: list[dict]) -> None:
    out = _out()
    if not found:
        out.print("no running app violates a policy")
        return
    table = Table("app", "owner", "policy", "enforcement", "message")
    for v in found:
        table.add_row(v["app"], v.get("owner") or "-", v["policy"], v["enforcement"],
                      escape(v["message"]))
    out.print(table)


# -- audit -----------------------------------------------------------------------------------
def audit(app_name: Annotated[str | None, typer.Option("--app", help="one app's entries")] = None,
          since_: Annotated[str | None, typer.Option("--since", help="e.g. 2h, 7d or 2026-12-01T09:00")] = None,
          actor: Annotated[str | None, typer.Option("--actor", help="e.g. user:alice")] = None,
          limit: int = 1000, url: UrlOpt = None,
          as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Who did what, when, to what, and whether it was allowed."""
    params: dict = {"limit": limit}
    if app_name:
        params["app"] = app_name
    if since_:
        params["since"] = since(since_)
    if actor:
        params["actor"] = actor
    entries = _client(url).json("GET", "/audit", params=params)
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    table = Table("time", "actor", "action", "target", "decision", "reason")
    for e in entries:
        colour = {"allowed": "green", "denied": "red"}.get(e["decision"], "yellow")
        table.add_row(_when(e["ts"]), e["actor"], e["action"], e["target"],
                      f"[{colour}]{e['decision']}[/]", escape(e["reason"]))
    _out().print(table)


# -- TTL: renew, restore, archives ---------------------------------------------------------
def renew(name: str,
          days: Annotated[int, typer.Option("--days", help="days from now (at most the policy maximum)")],
          reason: Annotated[str, typer.Option("--reason", help="why it should live on (audited)")],
          url: UrlOpt = None) -> None:
    """Let an app live DAYS more from now, before it is archived."""
    res = _client(url).json("POST", f"/apps/{name}/renew", json={"days": days, "reason": reason})
    _out().print(f"[green]renewed[/] {name} for {days} day(s): expires {_when(res['expires'])}")


def restore(name: str, url: UrlOpt = None) -> None:
    """Bring an archived (expired or removed) app back as it was: code, revisions, KV
    data, pending messages, routes and triggers (the deploy's policies apply)."""
    res = _client(url).json("POST", f"/apps/{name}/restore")
    _out().print(f"[green]restored[/] {name} at revision [bold]{res['revision']}[/] "
                 f"({res['kv_items']} KV item(s), {res['messages']} message(s)) from "
                 f"{res['archive']}")


def archives(url: UrlOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Archived apps that `skiff restore` can bring back."""
    found = _client(url).json("GET", "/archives")
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("app", "archived", "reason", "archive")
    for a in found:
        table.add_row(a["app"], _when(a["archived"]), a["reason"], a["archive"])
    _out().print(table)


# -- approvals --------------------------------------------------------------------------------
approvals_app = typer.Typer(help="Deploys held for asking more scopes: list, approve, deny.",
                            no_args_is_help=True)


@approvals_app.command("ls")
def approvals_ls(every: Annotated[bool, typer.Option("--all", help="decided ones too")] = False,
                 url: UrlOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    found = _client(url).json("GET", "/approvals", params={"state": "" if every else "pending"})
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table("id", "app", "requester", "scopes", "state", "asked")
    for a in found:
        table.add_row(a["id"], a["app"], a["requester"], escape(", ".join(a["scopes"])),
                      a["state"], _when(a["created"]))
    _out().print(table)


@approvals_app.command("approve")
def approvals_approve(approval_id: str, reason: Annotated[str, typer.Option("--reason")] = "",
                      url: UrlOpt = None) -> None:
    """Approve a held deploy (not your own); it is deployed now."""
    res = _client(url).json("POST", f"/approvals/{approval_id}/approve", json={"reason": reason})
    _out().print(f"[green]approved[/] {approval_id}: {res['app']} at revision "
                 f"{res.get('deploy', {}).get('revision', '?')}")


@approvals_app.command("deny")
def approvals_deny(approval_id: str,
                   reason: Annotated[str, typer.Option("--reason", help="told to its author")],
                   url: UrlOpt = None) -> None:
    _client(url).json("POST", f"/approvals/{approval_id}/deny", json={"reason": reason})
    _out().print(f"[red]denied[/] {approval_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(users_app, name="users")
    app.add_typer(groups_app, name="groups")
    app.add_typer(policy_app, name="policy")
    app.command("audit")(audit)
    app.command("renew")(renew)
    app.command("restore")(restore)
    app.command("archives")(archives)
    app.add_typer(approvals_app, name="approvals")
