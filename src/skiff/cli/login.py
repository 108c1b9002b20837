"""`skiff login` and `skiff context`: store a server once, use it from any directory."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from skiff.cli.contexts import Context, Contexts, Target, context_name, normal_url
from skiff.errors import SkiffError

context_app = typer.Typer(help="Named servers (URL + token) stored by `skiff login`.",
                          no_args_is_help=True)


def _out():  # noqa: ANN202 - the console of skiff.cli.app
    from skiff.cli.app import out

    return out


def _local_token(url: str) -> str | None:
    """The admin token of a server running on this machine at ``url``, if any: logging in
    to your own `skiff up` needs no copy and paste."""
    from pathlib import Path

    from skiff.cli.contexts import running_server
    from skiff.config import Config

    for home in dict.fromkeys([Config.resolve().home, Path(".skiff").resolve()]):
        running = running_server(home)
        if running and running.rstrip("/") == url and (home / "admin-token").exists():
            return (home / "admin-token").read_text().strip()
    return None


def login(url: Annotated[str, typer.Argument(help="the server, http://HOST:PORT")],
          token: Annotated[str | None, typer.Option(
              help="an admin API token (`skiff tokens create` makes one); default: the "
                   "token of a server running here at URL")] = None,
          name: Annotated[str | None, typer.Option(
              help="the context's name (default: HOST-PORT)")] = None) -> None:
    """Check a server and store it as the current context (any directory then uses it)."""
    from skiff.cli.client import Client

    url = normal_url(url)
    token = token or _local_token(url)
    client = Client(target=Target(url, token, "skiff login", True))
    if not client.reachable(timeout=5):
        client.send("GET", "/health", timeout=5)  # raises the unreachable error
        raise SkiffError(f"{url} answers, but not as a Skiff server (no /_skiff/api/health); "
                         "check the address", code="not_skiff", status=502)
    try:
        client.json("GET", "/apps")
    except SkiffError as exc:
        if exc.status == 401:
            raise SkiffError(f"{url} wants a token: `skiff login {url} --token TOKEN` (an "
                             "operator makes one with `skiff tokens create`; a local server's "
                             "is in its home's admin-token file)", code="unauthorized",
                             status=401) from None
        raise
    ctxs = Contexts()
    ctx = Context(name or context_name(url), url, token)
    ctxs.add(ctx)
    _out().print(f"[green]logged in[/] to {url} as context [bold]{ctx.name}[/] "
                 f"(stored in {ctxs.path}); every directory now uses it")


@context_app.command("ls")
def context_ls() -> None:
    """Stored contexts; the current one is marked."""
    ctxs = Contexts()
    if not ctxs.items:
        _out().print(f"no contexts yet ({ctxs.path}); add one with `skiff login URL`")
        return
    table = Table("", "name", "url", "token")
    for n, c in sorted(ctxs.items.items()):
        table.add_row("●" if n == ctxs.current else "", n, c.url, "yes" if c.token else "-")
    _out().print(table)


@context_app.command("use")
def context_use(name: str) -> None:
    """Make NAME the current context."""
    ctxs = Contexts()
    ctxs.use(name)
    _out().print(f"now using [bold]{name}[/] ({ctxs.items[name].url})")


@context_app.command("rm")
def context_rm(name: str) -> None:
    """Forget context NAME (and its token)."""
    ctxs = Contexts()
    ctxs.remove(name)
    _out().print(f"[green]removed[/] context {name}"
                 + ("" if ctxs.current else "; no current context now"))


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.add_typer(context_app, name="context")
