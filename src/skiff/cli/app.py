"""`skiff` commands (typer + rich)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from skiff.cli.failures import parse_json
from skiff.cli.sfn import sfn_app
from skiff.config import Config
from skiff.errors import SkiffError
from skiff.logtext import one_line

app = typer.Typer(help="Skiff: run many micro apps on one machine.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
# piped output (a file, CI logs) gets room for the wide tables instead of rich's 80 columns
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

UrlOpt = Annotated[str | None, typer.Option("--url", help="Skiff server URL (default: $SKIFF_URL, the `skiff login` context, or the server running on --home)")]
HomeOpt = Annotated[Path | None, typer.Option("--home", help="state directory ($SKIFF_HOME, default ./.skiff)")]
_background: set = set()  # tasks `skiff dev` runs beside the server


def _client(url: str | None, home: Path | None = None):  # noqa: ANN202
    from skiff.cli.client import Client

    return Client(url, home)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


@app.command()
def up(dirs: Annotated[list[Path] | None, typer.Argument(help="directories to search for skiff.yaml")] = None,
       port: Annotated[int | None, typer.Option(help="port (0 picks a free one)")] = None,
       host: Annotated[str | None, typer.Option(help="address to bind")] = None,
       forwarded_allow_ips: Annotated[str | None, typer.Option(
           help="IPs/CIDRs of proxies trusted to set X-Forwarded-For/-Proto (default: none)")] = None,
       allow_secret_scan_findings: Annotated[str | None, typer.Option(
           help="deploy DIRS even with hard-coded credential findings; the REASON is "
                "logged")] = None,
       node_name: Annotated[str | None, typer.Option(
           help="this node's name in health checks and the X-Skiff-Node header "
                "($SKIFF_NODE_NAME, default: hostname:port, or hostname-pid for port 0)")] = None,
       database_url: Annotated[str | None, typer.Option(
           "--database-url", help="the database ($SKIFF_DATABASE_URL, default: "
           "sqlite:///$SKIFF_HOME/skiff.db); nodes on one postgresql:// URL serve the same "
           "apps")] = None,
       home: HomeOpt = None) -> None:
    """Serve every app found under DIRS (and every app deployed before)."""
    from skiff.server import run

    config = Config.resolve(home=home, port=port, host=host,
                            forwarded_allow_ips=forwarded_allow_ips, node_name=node_name,
                            database_url=database_url)
    run(config, [d.resolve() for d in (dirs or [])],
        allow_secret_findings=allow_secret_scan_findings)


@app.command()
def dev(directory: Annotated[Path, typer.Argument(help="the app directory")] = Path("."),
        port: Annotated[int | None, typer.Option()] = None,
        home: HomeOpt = None) -> None:
    """Serve one app and redeploy it whenever a file changes."""
    from skiff.server import run

    directory = directory.resolve()
    config = Config.resolve(home=home, port=port)  # the home (and secrets) of `skiff up`

    async def watch(platform, cfg) -> None:  # noqa: ANN001
        import asyncio

        from watchfiles import awatch

        async def loop() -> None:
            async for changes in awatch(directory, watch_filter=lambda _c, p: "/.skiff" not in p
                                        and "__pycache__" not in p):
                names = ", ".join(sorted({Path(p).name for _, p in changes}))
                try:
                    res = await platform.deploy(directory)
                    out.print(f"[green]reloaded[/] {names} → revision {res['revision']}")
                except SkiffError as exc:
                    out.print(f"[red]reload failed[/] ({names}): {exc.message}")
                    tb = exc.details.get("traceback")
                    if tb:
                        out.print(str(tb), markup=False)
                sys.stdout.flush()  # piped (an editor's task, CI): each reload as it happens

        _background.add(asyncio.ensure_future(loop()))  # held: the loop runs till the server stops

    run(config, [directory], after_start=watch)


@app.command()
def deploy(directory: Annotated[Path, typer.Argument(help="the app directory")] = Path("."),
           url: UrlOpt = None,
           allow_secret_scan_findings: Annotated[str | None, typer.Option(
               help="deploy despite hard-coded credentials found; give the reason (recorded)")] = None,
           skip_validate: Annotated[bool, typer.Option(
               "--skip-validate", help="upload without `skiff validate` first")] = False) -> None:
    """Validate an app here, upload it, and serve it as a new immutable revision."""
    from skiff.cli.client import pack
    from skiff.cli.validate import check, name_files, say, shown

    where = shown(directory)
    if not skip_validate:
        for line in say(check(directory), escape(where)):
            out.print(line, highlight=False)
    directory = directory.resolve()
    from skiff.cli import progress

    client = _client(url)
    params = {"allow_secret_scan_findings": allow_secret_scan_findings} \
        if allow_secret_scan_findings else {}
    try:
        res = progress.deploy(client, pack(directory), params, out, directory.name)
    except SkiffError as exc:  # the server names files within the app: name them from here
        exc.message = name_files(exc.message, where)
        if isinstance(exc.details.get("traceback"), str):
            exc.details["traceback"] = name_files(exc.details["traceback"], where)
        raise
    if res.get("pending"):  # held: an operator approves (skiff approvals approve ID)
        out.print(f"[yellow]pending[/] {res['app']}: approval [bold]{res['approval']}[/]: "
                  f"{escape(res['message'])}")
        return
    verb = "deployed" if res["changed"] else "unchanged"
    # a state machine has no URL of its own: `skiff sfn start` runs it
    where = f" → {client.url}{res['path']}" if res.get("path") else \
        f"; run it with `skiff sfn start {res['app']}`"
    out.print(f"[green]{verb}[/] {res['app']} revision [bold]{res['revision']}[/] "
              f"({res['kind']}){where}")
    for w in res.get("policy", {}).get("warnings", []):
        out.print(f"[yellow]warning[/] {escape(w['policy'])}: {escape(w['message'])}")


@app.command()
def rollback(name: str, revision: Annotated[str | None, typer.Argument()] = None,
             url: UrlOpt = None) -> None:
    """Serve an earlier revision (the previous one by default)."""
    res = _client(url).json("POST", f"/apps/{name}/rollback", json={"revision": revision})
    out.print(f"[green]rolled back[/] {name} to revision [bold]{res['revision']}[/]")


@app.command("rm")
def rm(name: str, url: UrlOpt = None,
       purge: Annotated[bool, typer.Option("--purge", help="keep no archive to restore from")] = False,
       yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask (needed without a "
                                         "terminal)")] = False) -> None:
    """Archive an app (code, revisions, KV data, pending messages, secret refs), then
    delete it with its routes, instances, triggers, queues, KV data and revisions; says
    what goes and asks first. `skiff restore` brings it back (its invocation records and
    logs stay for audit)."""
    from skiff.cli import removal

    client = _client(url)
    described = client.json("GET", f"/apps/{name}")
    revisions = len(client.json("GET", f"/apps/{name}/revisions"))
    for line in removal.goes(described, revisions, purge=purge):
        out.print(line, markup=False, highlight=False)
    if not removal.confirm(name, yes, lambda q: typer.confirm(q, default=False)):
        out.print(f"kept {name}: nothing removed", highlight=False)
        return
    res = client.json("DELETE", f"/apps/{name}", params={"purge": "true"} if purge else {})
    out.print(f"[green]deleted[/] {name} ({res['kv_items']} KV item(s), {res['messages']} "
              f"queued message(s)); its invocation records and logs are kept as "
              f"{res['records_kept_as']}")
    if res.get("archive"):
        out.print(f"archived to {res['archive']}; bring it back with `skiff restore {name}`")


@app.command("ls")
def ls(name: Annotated[str | None, typer.Argument(help="show one app in detail")] = None,
       url: UrlOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False,
       wide: Annotated[bool, typer.Option("--wide", help="every column, however wide")] = False) -> None:
    """Apps with revision, instances, requests, latency percentiles and cold starts."""
    client = _client(url)
    if name:
        data = client.json("GET", f"/apps/{name}")
        data["revisions"] = client.json("GET", f"/apps/{name}/revisions")
        if as_json:
            out.print_json(data=data)
            return
        table = Table(title=f"{name}", show_header=False)
        for key in ("revision", "kind", "owner", "path", "host", "environment", "instances",
                    "instances_created", "churn_per_min", "requests", "errors", "throttled",
                    "cold_starts", "cold_start_ratio", "avg_init_ms", "cold_start_added_p95_ms",
                    "p50_ms", "p95_ms",
                    "p99_ms", "billed_ms"):
            table.add_row(key, str(data.get(key)))
        out.print(table)
        revs = Table("revision", "created", "current")
        for r in data["revisions"]:
            revs.add_row(r["revision"], time.strftime("%Y-%m-%d %H:%M:%S",
                                                      time.localtime(r["created"])),
                         "●" if r["current"] else "")
        out.print(revs)
        return
    apps = client.json("GET", "/apps")
    if as_json:
        out.print_json(data=apps)
        return
    from skiff.cli import listing

    rows = [listing.row(a) for a in apps]
    width = listing.terminal_width()
    shown = listing.fit(rows, width, wide=wide)
    table = Table(*(c.header for c in shown), title=f"Skiff at {client.url}")
    for r in rows:
        table.add_row(*(escape(r[c.header]) for c in shown))
    need = listing.table_width([max([len(c.header)] + [len(r[c.header]) for r in rows])
                                for c in shown])
    out.print(table, width=max(width, need) if wide else width)
    for line in listing.legend(shown, len(listing.COLUMNS) - len(shown)):
        out.print(line, style="dim", highlight=False)


@app.command()
def invoke(name: str, data: Annotated[str | None, typer.Option("--data", "-d", help="a raw JSON event")] = None,
           event: Annotated[Path | None, typer.Option("--event", "-e", help="a raw JSON event from a file (`skiff event generate`)")] = None,
           path: Annotated[str, typer.Option(help="HTTP apps: the path (and ?query)")] = "/",
           method: Annotated[str, typer.Option(help="HTTP apps: the method")] = "GET",
           header: Annotated[list[str] | None, typer.Option("--header", "-H", help="HTTP apps: NAME:VALUE (repeat)")] = None,
           body: Annotated[str | None, typer.Option(help="HTTP apps: the request body")] = None,
           local: Annotated[Path | None, typer.Option("--local", metavar="DIR", help="run the app in DIR in this process, without a server")] = None,
           is_async: Annotated[bool, typer.Option("--async", help="queue it durably; print its id")] = False,
           url: UrlOpt = None) -> None:
    """Invoke an app with the event its kind expects (an API Gateway event for a Lambda
    handler, a request for an HTTP app) or a raw one, and print the result."""
    from skiff.cli import invoking

    raw = invoking.raw_event(data, event)
    if local is not None:
        status, text = invoking.local(local, raw, method, path, header or [], body)
    else:
        status, text = invoking.remote(_client(url), name, raw, method, path, header or [],
                                       body, is_async)
    if status is not None:
        out.print(f"HTTP {status}", style="green" if status < 400 else "red", highlight=False)
    try:
        out.print_json(text)
    except (ValueError, json.JSONDecodeError):
        out.print(text, markup=False)


@app.command()
def logs(name: str,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
         tail: Annotated[int, typer.Option("--tail", "-n", min=1, max=5000,
                                           help="how many of the newest lines")] = 100,
         since: Annotated[str | None, typer.Option(help="only lines since: 30s, 10m, 2h, 1d, "
                                                   "or an ISO 8601 time")] = None,
         request_id: Annotated[str | None, typer.Option("--request-id", help="one request's lines")] = None,
         level: Annotated[str | None, typer.Option(help="this level and above: debug, info, "
                                                   "warning, error, critical")] = None,
         stream: Annotated[str | None, typer.Option(help="stdout, stderr, platform or egress")] = None,
         as_json: Annotated[bool, typer.Option("--json", help="one JSON record a line")] = False,
         url: UrlOpt = None) -> None:
    """Print the app's newest output and platform lines, each with its request id."""
    client = _client(url)
    query = {k: v for k, v in {"since": since, "request_id": request_id, "stream": stream}.items()
             if v}
    rows = client.json("GET", f"/apps/{name}/logs",
                       params={**query, "tail": tail, **({"level": level} if level else {})})
    for r in rows:
        _log_row(r, as_json)
    if not follow:
        return
    # from the newest line there is (a level filter may have left older ones out)
    last = client.json("GET", f"/apps/{name}/logs", params={"tail": 1})
    after = max([r["seq"] for r in rows + last] or [0])
    from skiff.observe.logview import at_least, normal_level

    minimum = normal_level(level) if level else None
    while True:
        time.sleep(0.5)
        for r in client.json("GET", f"/apps/{name}/logs", params={**query, "after": after}):
            after = r["seq"]
            if minimum is None or at_least(r["level"], minimum):  # filtered here: pages advance
                _log_row(r, as_json)


def _log_row(r: dict, as_json: bool) -> None:
    if as_json:
        keep = ("seq", "ts", "level", "app", "revision", "instance", "request_id", "stream",
                "line")
        print(json.dumps({k: r.get(k) for k in keep}), flush=True)
        return
    ts = time.strftime("%H:%M:%S", time.localtime(r["ts"]))
    style = {"stderr": "red", "platform": "cyan"}.get(r["stream"], "")
    # every field as plain text on one line: an app's text must not pass for
    # another line or for markup (the platform escapes lines as it stores them;
    # this also covers rows stored before it did)
    rid = escape(one_line(r["request_id"][:8])) if r["request_id"] else "-"
    instance = escape(one_line(r["instance"] or "-"))
    stream = escape(one_line(r["stream"]))
    out.print(f"{ts} [dim]{rid:<8} {instance:<9}[/] "
              f"[{style or 'default'}]{stream:<8}[/] ", end="")
    out.print(one_line(r["line"]), markup=False, highlight=False, emoji=False,
              soft_wrap=True)


@app.command()
def invocations(name: str,
                limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000,
                                                   help="how many of the newest")] = 20,
                as_json: Annotated[bool, typer.Option("--json", help="one JSON record a line")] = False,
                url: UrlOpt = None) -> None:
    """The app's recent invocations, newest first, with their figures."""
    rows = _client(url).json("GET", f"/apps/{name}/invocations", params={"limit": limit})
    if as_json:
        for r in rows:
            print(json.dumps(r), flush=True)
        return
    table = Table("time", "status", "trigger", "ms", "cold", "init ms", "MB", "request",
                  "trace id", "error", title=f"{name}: recent invocations")
    for r in rows:
        status = str(r["status"])
        colour = "green" if r["status"] < 400 else "yellow" if r["status"] < 500 else "red"
        table.add_row(time.strftime("%H:%M:%S", time.localtime(r["ts"])),
                      f"[{colour}]{status}[/]", escape(one_line(r["trigger"])),
                      _ms(r["duration_ms"]), "cold" if r["cold"] else "",
                      _ms(r["init_ms"]) if r["cold"] else "", str(r["memory_mb"]),
                      escape(one_line(r["id"][:8])),  # as `skiff logs` shows it
                      escape(one_line(r.get("trace_id") or "-")),
                      escape(one_line(r["error"] or "")))
    out.print(table)


@app.command()
def new(name: str,
        template: Annotated[str, typer.Option("--template", "-t", help=(
            "static-site+api | lambda-api | asgi | flask | static-site | queue-worker | "
            "cron-job | webhook | workflow, or a directory, or a git URL"))] = "lambda-api",
        directory: Annotated[Path | None, typer.Option("--dir", help="where to create it")] = None,
        git: Annotated[bool, typer.Option("--git/--no-git", help="start a git repository")] = True) -> None:
    """Scaffold a working app with its own tests, a .gitignore and a first commit."""
    from skiff.cli.scaffold import create

    dest, notes = create(name, template, directory or Path("."), git=git)
    for note in notes:
        out.print(f"[yellow]note[/] {escape(note)}")
    out.print(f"[green]created[/] {dest} from template {escape(template)}\n"
              f"  run it:   skiff dev {dest}\n  test it:  skiff test {dest}")


secrets_app = typer.Typer(help="Encrypted, versioned secrets that apps reference as secret://NAME.",
                          no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")


class _LocalSecrets:
    """`skiff secrets` on this machine writes the store directly; a running Skiff
    notices the change and replaces the instances of apps that use the secret."""

    def __init__(self, home: Path | None) -> None:
        from skiff.governance import SecretStore
        from skiff.storage import database_url, open_secret_rows

        config = Config.resolve(home=home)
        self.url = database_url(config.home, config.database_url)
        # the rows where the server keeps them: secrets.db, or SKIFF_DATABASE_URL's tables
        self.store = SecretStore.open(config.home, rows=open_secret_rows(self.url))

    def _audit(self, action: str, name: str, reason: str) -> None:
        """Changes made here, past the admin API, are in the audit trail too: the actor
        is the local account that ran the command."""
        import getpass

        from skiff.governance import AuditEntry
        from skiff.storage import open_audit

        log = open_audit(self.url)
        try:
            log.append(AuditEntry(actor=f"local:{getpass.getuser()}", action=action,
                                  target=f"secret:{name}", decision="allowed", reason=reason))
        finally:
            log.close()

    def set(self, name: str, value: str) -> int:
        version = self.store.set(name, value)
        self._audit("secret.rotate" if version > 1 else "secret.set", name, f"version {version}")
        return version

    def ls(self) -> list[dict]:
        return [{"name": i.name, "version": i.latest_version, "updated": i.updated}
                for i in self.store.list()]

    def rm(self, name: str) -> int:
        removed = self.store.delete(name)
        self._audit("secret.delete", name, f"{removed} version(s) removed")
        return removed

    def exists(self, name: str) -> bool:
        return any(i.name == name for i in self.store.list())


class _RemoteSecrets:
    def __init__(self, client) -> None:  # noqa: ANN001
        self.client = client

    def set(self, name: str, value: str) -> int:
        return self.client.json("PUT", f"/secrets/{name}", json={"value": value})["version"]

    def ls(self) -> list[dict]:
        return self.client.json("GET", "/secrets")

    def rm(self, name: str) -> int:
        return self.client.json("DELETE", f"/secrets/{name}")["versions_removed"]

    def exists(self, name: str) -> bool:
        return any(s["name"] == name for s in self.ls())


def _secrets(url: str | None, home: Path | None):  # noqa: ANN202
    """The server's secrets whenever one is chosen or answers; the local store only when
    no server runs (a write there while one runs would be a secret it never reads)."""
    from skiff.cli.client import Client

    client = Client(url, home)
    if client.target.explicit or client.reachable():
        return _RemoteSecrets(client)
    return _LocalSecrets(home)


def _secret_value(value: str | None) -> str:
    if value is not None:
        return value
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("value: ")
    return sys.stdin.read().rstrip("\n")


@secrets_app.command("set")
def secrets_set(name: str,
                value: Annotated[str | None, typer.Argument(help="the value; read from stdin when omitted")] = None,
                if_missing: Annotated[bool, typer.Option(help="leave an existing secret alone")] = False,
                url: UrlOpt = None, home: HomeOpt = None) -> None:
    """Store a new version of a secret."""
    store = _secrets(url, home)
    if if_missing and store.exists(name):
        out.print(f"{name} exists; left as it is")
        return
    out.print(f"[green]stored[/] {name} version {store.set(name, _secret_value(value))}")


@secrets_app.command("rotate")
def secrets_rotate(name: str, value: Annotated[str | None, typer.Argument()] = None,
                   url: UrlOpt = None, home: HomeOpt = None) -> None:
    """Store a new version; apps using it get fresh instances, without failing a request."""
    store = _secrets(url, home)
    if not store.exists(name):
        raise SkiffError(f"no secret named {name!r}; create it with `skiff secrets set {name}`",
                         code="secret_not_found", status=404)
    out.print(f"[green]rotated[/] {name} to version {store.set(name, _secret_value(value))}")


@secrets_app.command("ls")
def secrets_ls(url: UrlOpt = None, home: HomeOpt = None) -> None:
    """Secret names and versions (values are never shown)."""
    table = Table("name", "version", "updated")
    for s in _secrets(url, home).ls():
        table.add_row(s["name"], str(s["version"]),
                      time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["updated"])))
    out.print(table)


@secrets_app.command("rm")
def secrets_rm(name: str, url: UrlOpt = None, home: HomeOpt = None) -> None:
    """Delete a secret and all its versions."""
    out.print(f"[green]removed[/] {name} ({_secrets(url, home).rm(name)} versions)")


@app.command()
def doctor(home: HomeOpt = None) -> None:
    """Which isolation layers this machine enforces, and why any is not."""
    import uuid

    from skiff.instance.cgroups import CgroupManager
    from skiff.instance.isolation import Support

    manager = CgroupManager(f"skiff-doctor-{uuid.uuid4().hex[:6]}")
    try:
        support = Support.probe(manager)
    finally:
        manager.close()
    table = Table("layer", "", "detail", title="Skiff isolation on this machine")
    for layer in support.layers():
        table.add_row(layer.name, "[green]✓[/]" if layer.active else "[red]✗[/]",
                      escape(layer.detail))
    out.print(table)


@app.command()
def status(invocation_id: str, url: UrlOpt = None) -> None:
    """Status and result of an async invocation."""
    out.print_json(data=_client(url).json("GET", f"/invocations/{invocation_id}"))


@app.command()
def publish(event_type: Annotated[str, typer.Argument(metavar="TYPE")],
            source: Annotated[str, typer.Option(help="the event's source")] = "cli",
            data: Annotated[str | None, typer.Option("--data", "-d", help="JSON data")] = None,
            url: UrlOpt = None) -> None:
    """Publish a CloudEvent to the bus; prints which apps' rules matched it."""
    import uuid

    event = {"specversion": "1.0", "id": str(uuid.uuid4()), "type": event_type,
             "source": source}
    if data is not None:
        event["data"] = parse_json(data, "--data")
        event["datacontenttype"] = "application/json"
    res = _client(url).json("POST", "/events", content=json.dumps(event).encode(),
                            headers={"content-type": "application/cloudevents+json"})
    out.print_json(data=res)


queues_app = typer.Typer(help="Queues: stats, peek, send, redrive, purge.", no_args_is_help=True)
app.add_typer(queues_app, name="queues")


@queues_app.command("ls")
def queues_ls(url: UrlOpt = None) -> None:
    """Every queue with visible, in-flight and delayed counts."""
    table = Table("queue", "visible", "in flight", "delayed", "dead-letter queue")
    for q in _client(url).json("GET", "/queues"):
        table.add_row(q["name"], str(q["visible"]), str(q["in_flight"]), str(q["delayed"]),
                      q["dead_letter_queue"] or "")
    out.print(table)


@queues_app.command("peek")
def queues_peek(name: str, limit: int = 10, url: UrlOpt = None) -> None:
    """Show messages without taking them."""
    out.print_json(data=_client(url).json("GET", f"/queues/{name}/messages",
                                          params={"limit": limit}))


@queues_app.command("send")
def queues_send(name: str, body: str, url: UrlOpt = None,
                create: Annotated[bool, typer.Option(
                    "--create", help="make the queue if no app declares it yet")] = False) -> None:
    """Enqueue a message (to a queue that exists, unless --create)."""
    res = _client(url).json("POST", f"/queues/{name}/messages", json={"body": body},
                            params={"create": "true"} if create else {})
    out.print(f"[green]sent[/] {res['message_id']}")


@queues_app.command("redrive")
def queues_redrive(dlq: str, to: Annotated[str | None, typer.Option(help="target queue")] = None,
                   url: UrlOpt = None) -> None:
    """Move dead-lettered messages back to where they came from."""
    params = {"to": to} if to else {}
    out.print(f"moved {_client(url).json('POST', f'/queues/{dlq}/redrive', params=params)['moved']}")


@queues_app.command("purge")
def queues_purge(name: str, url: UrlOpt = None) -> None:
    """Delete every message of a queue."""
    out.print(f"purged {_client(url).json('DELETE', f'/queues/{name}/messages')['purged']}")


routes_app = typer.Typer(help="Route grants: let an app have a route that overlaps others'.",
                         no_args_is_help=True)
app.add_typer(routes_app, name="routes")
HostOpt = Annotated[str | None, typer.Option("--host", help="the route's host name")]
PathOpt = Annotated[str, typer.Option("--path", help="the route's path prefix")]


@routes_app.command("grant")
def routes_grant(name: str, host: HostOpt = None, path: PathOpt = "/",
                 url: UrlOpt = None) -> None:
    """Let app NAME declare this route at its next deploy (e.g. --path / for a catch-all)."""
    res = _client(url).json("PUT", "/route-grants", json={"app": name, "host": host, "path": path})
    out.print(f"[green]granted[/] {name}: host {res['host'] or '-'} path {res['path']}; "
              "deploy the app to serve it")


@routes_app.command("revoke")
def routes_revoke(name: str, host: HostOpt = None, path: PathOpt = "/",
                  url: UrlOpt = None) -> None:
    """Withdraw a grant (a route it allowed is no longer served, at once)."""
    _client(url).json("DELETE", "/route-grants", json={"app": name, "host": host, "path": path})
    out.print(f"[green]revoked[/] {name}: host {host or '-'} path {path}")


@routes_app.command("grants")
def routes_grants(url: UrlOpt = None) -> None:
    """Every route grant."""
    table = Table("app", "host", "path")
    for g in _client(url).json("GET", "/route-grants"):
        table.add_row(g["app"], g["host"] or "", g["path"])
    out.print(table)


kv_app = typer.Typer(help="An app's key-value store, for operators.", no_args_is_help=True)
app.add_typer(kv_app, name="kv")


@kv_app.command("get")
def kv_get(name: str, key: str, url: UrlOpt = None) -> None:
    out.print_json(data=_client(url).json("GET", f"/apps/{name}/kv/{key}"))


@kv_app.command("put")
def kv_put(name: str, key: str, value: Annotated[str, typer.Argument(help="JSON value")],
           url: UrlOpt = None) -> None:
    parse_json(value, "the value")
    out.print_json(data=_client(url).json("PUT", f"/apps/{name}/kv/{key}",
                                          content=value.encode()))


@kv_app.command("ls")
def kv_ls(name: str, prefix: str = "", url: UrlOpt = None) -> None:
    page = _client(url).json("GET", f"/apps/{name}/kv", params={"prefix": prefix})
    table = Table("key", "version", "value")
    for item in page["items"]:
        table.add_row(item["key"], str(item["version"]), escape(json.dumps(item["value"])[:80]))
    out.print(table)


lb_app = typer.Typer(help="Load balancers in front of several nodes on one database.",
                     no_args_is_help=True)
app.add_typer(lb_app, name="lb")


@lb_app.command("haproxy")
def lb_haproxy(node: Annotated[list[str], typer.Option(
                   "--node", metavar="URL",
                   help="a node's URL, http://HOST:PORT (repeat for each node)")],
               bind: Annotated[str, typer.Option(
                   metavar="[HOST]:PORT", help="haproxy's address")] = ":8080",
               balance: Annotated[str, typer.Option(
                   metavar="ALGO", help="leastconn or roundrobin")] = "leastconn",
               output: Annotated[Path | None, typer.Option(
                   "--output", "-o", metavar="FILE",
                   help="write the config to FILE instead of printing it")] = None,
               ) -> None:
    """Print an haproxy.cfg that serves BIND from every --node (check it: haproxy -c -f FILE)."""
    from skiff.cli.lb import haproxy_config

    text = haproxy_config(node, bind, balance=balance)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        err.print(f"wrote {output} ({len(node)} nodes); check it with: haproxy -c -f {output}")


@app.command()
def migrate(database_url: Annotated[str | None, typer.Option(
                "--database-url", help="the database ($SKIFF_DATABASE_URL, default: "
                "sqlite:///$SKIFF_HOME/skiff.db)")] = None,
            home: HomeOpt = None) -> None:
    """Bring the database's schema to this version of Skiff (run once per upgrade,
    from one node, before starting the nodes of the new version)."""
    from skiff.storage import CODE_VERSION, mask_url
    from skiff.storage import database_url as default_url
    from skiff.storage import migrate as run_migrations

    config = Config.resolve(home=home, database_url=database_url)
    url = default_url(config.home, config.database_url)
    applied = run_migrations(url)
    if applied:
        out.print(f"[green]migrated[/] {mask_url(url)}: applied {', '.join(applied)} "
                  f"(schema version {CODE_VERSION})")
    else:
        out.print(f"{mask_url(url)} is at schema version {CODE_VERSION}; nothing to do")


@app.command()
def schema() -> None:
    """Print the JSON Schema of skiff.yaml (for editors)."""
    from skiff.manifest import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


@app.command()
def version() -> None:
    """Print Skiff's version."""
    import skiff

    out.print(skiff.__version__)


def _register_governance() -> None:
    from skiff.cli import alerts, apptest, inventory, login, spending, validate
    from skiff.cli.events import event_app
    from skiff.cli.governance import register

    register(app)
    inventory.register(app)
    spending.register(app)
    alerts.register(app)
    login.register(app)
    app.add_typer(event_app, name="event")
    validate.register(app)
    apptest.register(app)


_register_governance()
app.add_typer(sfn_app, name="sfn")


def main() -> None:
    from skiff.cli.failures import run

    run(app, err)
