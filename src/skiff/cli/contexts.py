"""Where the CLI's server is: named contexts (`skiff login`) and the resolution order
every command follows.

A context is a URL and a token stored once, like faas-cli's gateway login, so any
directory reaches the same server. The file holds tokens: it is created 0600 in a
0700 directory and replaced atomically, never rewritten in place.

Resolution, first that applies: ``--url``, ``$SKIFF_URL``, the current context, a
running local server (``server.json`` of ``--home``/``$SKIFF_HOME``/``./.skiff``,
while its server holds the home's lock), else the default address. Each answer
says where it came from, so "cannot connect" can name the source."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from skiff.config import Config
from skiff.errors import SkiffError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/skiff``, else ``~/.config/skiff`` (the XDG base directory rule)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "skiff"


def contexts_file() -> Path:
    return config_dir() / "contexts.json"


@dataclass(frozen=True)
class Context:
    name: str
    url: str
    token: str | None = None


class Contexts:
    """The contexts file: ``{"current": NAME, "contexts": {NAME: {url, token}}}``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or contexts_file()
        data: dict = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise SkiffError(f"{self.path} is not readable JSON ({exc}); fix it or delete "
                                 "it and run `skiff login URL` again", code="bad_config",
                                 status=400) from None
        self.current: str | None = data.get("current")
        self.items: dict[str, Context] = {
            n: Context(n, str(c["url"]), c.get("token"))
            for n, c in (data.get("contexts") or {}).items() if isinstance(c, dict) and "url" in c}

    def get(self, name: str) -> Context:
        if name not in self.items:
            known = ", ".join(sorted(self.items)) or "none yet"
            raise SkiffError(f"no context named {name!r} (contexts: {known}); add one with "
                             "`skiff login URL --name NAME`", code="context_not_found",
                             status=404)
        return self.items[name]

    def active(self) -> Context | None:
        return self.items.get(self.current) if self.current else None

    def add(self, ctx: Context, *, use: bool = True) -> None:
        if not _NAME.fullmatch(ctx.name):
            raise SkiffError(f"a context name is letters, digits, '.', '_' and '-' (got "
                             f"{ctx.name!r})", code="bad_name", status=400)
        self.items[ctx.name] = ctx
        if use:
            self.current = ctx.name
        self.save()

    def use(self, name: str) -> None:
        self.get(name)
        self.current = name
        self.save()

    def remove(self, name: str) -> None:
        self.get(name)
        del self.items[name]
        if self.current == name:
            self.current = None
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = {"current": self.current,
                "contexts": {n: {"url": c.url, **({"token": c.token} if c.token else {})}
                             for n, c in sorted(self.items.items())}}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(body, f, indent=2)
        os.chmod(tmp, 0o600)  # O_CREAT's mode passes through the umask
        os.replace(tmp, self.path)


def context_name(url: str) -> str:
    """A default name for a context: its host and port (``127.0.0.1-8080``)."""
    parts = urlsplit(url)
    name = (parts.hostname or "server") + (f"-{parts.port}" if parts.port else "")
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:64]


def normal_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SkiffError(f"{url!r} is not a server URL; give it as http://HOST:PORT",
                         code="bad_url", status=400)
    return url


@dataclass(frozen=True)
class Target:
    """The server a command talks to, the token it sends, and where both came from."""

    url: str
    token: str | None
    source: str  # read by a person: "--url", "$SKIFF_URL", "context 'prod' (...)" ...
    explicit: bool  # chosen by the user (flag, environment, context), not discovered


def running_server(home: Path) -> str | None:
    """The URL in ``home/server.json`` while a server holds the home's lock, else None
    (a server that died leaves its server.json behind; the kernel drops its flock)."""
    info, lock = home / "server.json", home / "server.lock"
    if not info.exists() or not lock.exists():
        return None
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                return str(json.loads(info.read_text())["url"])
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def resolve(url: str | None = None, home: Path | None = None) -> Target:
    config = Config.resolve(home=home)
    env_token = os.environ.get("SKIFF_ADMIN_TOKEN") or None
    local = config.home / "admin-token"
    local_token = local.read_text().strip() if local.exists() else None
    ctxs = Contexts()

    def known_token(u: str) -> str | None:
        # a URL given by hand that a context holds uses that context's token
        return next((c.token for c in ctxs.items.values() if c.url == u and c.token), None)

    if url:
        u = normal_url(url)
        return Target(u, env_token or known_token(u) or local_token, "--url", True)
    if os.environ.get("SKIFF_URL"):
        u = normal_url(os.environ["SKIFF_URL"])
        return Target(u, env_token or known_token(u) or local_token, "$SKIFF_URL", True)
    ctx = ctxs.active()
    if ctx is not None:
        return Target(ctx.url, env_token or ctx.token, f"context {ctx.name!r} ({ctxs.path})",
                      True)
    for h in dict.fromkeys([config.home, Path(".skiff").resolve()]):
        running = running_server(h)
        if running:
            tok = h / "admin-token"
            return Target(running.rstrip("/"),
                          env_token or (tok.read_text().strip() if tok.exists() else None),
                          f"the server running on home {h}", False)
    return Target(f"http://{config.host}:{config.port}", env_token or local_token,
                  f"the default address (no --url, $SKIFF_URL, `skiff login` context, or "
                  f"server running on home {config.home})", False)
