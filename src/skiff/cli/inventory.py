"""`skiff inventory | discover | claim`: what runs and who answers for it, and what
runs elsewhere that Skiff does not know of yet."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from skiff.cli.governance import HomeOpt, UrlOpt, _client
from skiff.config import Config
from skiff.errors import SkiffError

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
#: the table's columns (title, width): 79 characters with the spaces between them
COLUMNS = (("APP", 14), ("OWNER", 13), ("STATUS", 7), ("TTL", 5), ("DEPLOYED BY", 12),
           ("POLICY", 6), ("REQ/H", 5), ("ERR", 4), ("COST", 5))


def _echo(text: str = "") -> None:
    print(text)  # plain: the table is laid out for 80 columns already


def _fit(value: object, width: int) -> str:
    text = "-" if value is None or value == "" else str(value)
    return text if len(text) <= width else text[: width - 1] + "~"


def _owner(owner: str | None) -> str | None:
    return owner.split(":", 1)[1] if owner and owner.startswith("user:") else owner


def _short(n: float) -> str:
    return f"{n:.0f}" if n < 10_000 else f"{n / 1000:.0f}k"


def table_lines(inv: dict) -> list[str]:
    """The inventory as lines of at most 80 characters."""
    lines = [" ".join(t.ljust(w) for t, w in COLUMNS).rstrip()]
    for a in inv["apps"]:
        ttl = a["ttl_left_days"]
        deployed = a["last_deploy"]["by"] if a["last_deploy"] else None
        cost = a["cost"]
        cells = (a["app"], _owner(a["owner"]), a["status"],
                 None if ttl is None else f"{ttl:.0f}d", _owner(deployed), a["policy"]["status"],
                 _short(a["requests"]) + ("+" if a["requests_capped"] else ""),
                 _short(a["errors"]),
                 None if cost is None else f"{cost.get('per_day', 0):.2f}")
        lines.append(" ".join(_fit(c, w).ljust(w) for c, (_, w) in zip(cells, COLUMNS,
                                                                          strict=True)).rstrip())
    for h in inv.get("undeclared_egress", []):
        lines.append(_fit(f"egress no app declares: {h['host']}:{h['port']} "
                          f"({h['attempts']}x by {', '.join(h['apps'])})", 80))
    return lines


def inventory(url: UrlOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Every app and draft: owner, TTL left, who deployed it last, policy status,
    requests and errors of the last hour, cost (--json: template, scopes and more)."""
    inv = _client(url, home).json("GET", "/inventory")
    if as_json:
        print(json.dumps(inv, indent=2))
        return
    for line in table_lines(inv):
        _echo(line)


def discover(paths: Annotated[list[Path], typer.Argument(help="directories or git repositories")],
             register: Annotated[bool, typer.Option("--register", help="record the finds as drafts on the server for their owners to claim")] = False,
             url: UrlOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Find micro apps Skiff does not run: Lambda handlers, ASGI/WSGI apps,
    functions-framework functions, SAM/serverless templates, Dockerfiles running web
    servers, skiff.yaml files not deployed; each with an owner guessed from git. With
    a server (--url, a running `skiff up`, or --register): deployed apps are left out
    and its egress log is read for hosts no app declares."""
    from skiff.governance.discover import scan

    for p in paths:
        if not p.exists():
            raise SkiffError(f"{p} does not exist: name directories or git repositories to scan",
                             code="not_found", status=404)
    client, inv = None, None
    if register or url or os.environ.get("SKIFF_URL") or (
            Config.resolve(home=home).home / "server.json").exists():
        client = _client(url, home)
        inv = client.json("GET", "/inventory")
    registered = {a["app"] for a in inv["apps"] if a["status"] != "draft"} if inv else set()
    found = scan(paths, registered=registered)
    result = found.to_dict() | {"undeclared_egress": inv["undeclared_egress"] if inv else None}
    if register:
        assert client is not None
        result["drafts"] = client.json("POST", "/drafts", json=result["finds"])
    if as_json:
        print(json.dumps(result, indent=2))
        return
    _echo(f"{len(found.finds)} find(s) in {found.files} file(s)"
          + ("" if inv else " (no server: deployed apps are not left out, no egress log)"))
    for f in found.finds:
        _echo(f"{f.kind:<19} {f.name:<20} {f.owner or '(no git history)'}")
        _echo(f"  {f.path}: {f.detail}")
    for h in result["undeclared_egress"] or []:
        _echo(f"egress no app declares: {h['host']}:{h['port']} ({h['attempts']}x by "
              f"{', '.join(h['apps'])})")
    for s in found.skipped:
        _echo(f"skipped {s}")
    if register:
        _echo(f"{len(result['drafts'])} draft(s) recorded: owners claim them with "
              "`skiff claim NAME`")


def claim(name: str, url: UrlOpt = None, home: HomeOpt = None) -> None:
    """Take a draft (a discovered app) as yours; your deploy of it makes it an app."""
    res = _client(url, home).json("POST", f"/drafts/{name}/claim")
    _echo(f"claimed {name} ({res['kind']} at {res['path']}) as {res['claimed_by']}: "
          f"{res['next']}")


def register(app: typer.Typer) -> None:
    app.command("inventory")(inventory)
    app.command("discover")(discover)
    app.command("claim")(claim)
