"""Run the platform: uvicorn (uvloop + httptools) serving the gateway, then
deploy the app directories it was given."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvicorn

from skiff.config import Config
from skiff.edge import ADMIN_RESERVE, EdgeLimits, EdgeProtocol, raise_fd_limit
from skiff.errors import SkiffError
from skiff.gateway import Gateway, upload
from skiff.gateway.admin import build_admin
from skiff.platform import Platform

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


async def deploy_all(platform: Platform, dirs: list[Path]) -> None:
    apps = find_apps(dirs)
    gate = asyncio.Semaphore(4)  # a thousand apps deploy a few at a time, not all at once

    async def one(d: Path) -> dict:
        async with gate:
            return await platform.deploy(d)

    results = await asyncio.gather(*(one(d) for d in apps), return_exceptions=True)
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
            say(f"  ✓ {res['app']:<20} {res['kind'] or '':<7} rev {res['revision']}  "
                f"http://{base.host}:{base.port}/{res['app']}/")


async def serve(config: Config, dirs: list[Path],
                after_start: Callable[[Platform, Config], Awaitable[None]] | None = None) -> None:
    fds = raise_fd_limit()
    # half the open files for client connections: instances, their pipes and sockets,
    # the egress proxy and the databases need the rest (a slowloris at the fd limit
    # made every app and the admin API refuse connections)
    max_connections = config.max_connections or max(64, fds // 2 - ADMIN_RESERVE)
    config = dataclasses.replace(config, max_connections=max_connections)
    for name in upload.remove_stale(config.home):
        say(f"removed upload {name} left by a server that is gone")
    platform = Platform(config)
    limits = EdgeLimits(max_header_bytes=config.max_header_bytes,
                        header_timeout=config.header_timeout, max_connections=max_connections)
    gateway = Gateway(platform, build_admin(platform, config.admin_token(), limits.stats))
    server = uvicorn.Server(uvicorn.Config(
        gateway, host=config.host, port=config.port, lifespan="on", log_level="warning",
        access_log=False, http=functools.partial(EdgeProtocol, limits=limits),  # type: ignore[arg-type]
        # the gateway applies forwarding headers itself, from configured proxies only
        proxy_headers=False, timeout_graceful_shutdown=5))
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
    say(f"Skiff {url}  (home {config.home}, memory isolation: "
        f"{'cgroup v' + str(platform.cgroups.version) if platform.cgroups.available else 'rlimit'})")
    if dirs:
        await deploy_all(platform, dirs)
    if after_start is not None:
        await after_start(platform, config)
    say(f"ready: {len(platform.apps)} app(s) at {url}/<app>/  (admin API {url}/_skiff/api/docs)")
    await task


def run(config: Config, dirs: list[Path],
        after_start: Callable[[Platform, Config], Awaitable[None]] | None = None) -> None:
    try:
        import uvloop

        uvloop.run(serve(config, dirs, after_start))
    except ImportError:
        asyncio.run(serve(config, dirs, after_start))
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
