"""A launcher of scripted instances: each answers from a Python function, in this
process, so the platform's deploy, invoke, scaling, rollback, delete and async
logic run in-process behind the real gateway (``skiff.server.assemble(config,
launcher=FakeLauncher(...))``)."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from skiff import ipc as p
from skiff.errors import InvocationError
from skiff.instance import InstanceHooks, ZygoteSpec

Handler = Callable[[p.HttpRequest | p.Event, "FakeInstance"], p.Response | Awaitable[p.Response]]


class Crash(Exception):
    """Raised by a script: its instance dies while handling the request."""


@dataclass
class Script:
    handler: Handler
    kind: str = "lambda"


def reply(msg: p.HttpRequest | p.Event, body: str | bytes, status: int = 200) -> p.Response:
    data = body.encode() if isinstance(body, str) else body
    return p.Response(id=msg.id, status=status, headers=[("content-type", "text/plain")],
                      body=data)


@dataclass
class _NoCgroups:
    available: bool = False
    version: int = 0


class FakeInstance:
    """What a Pool and the platform use of ``skiff.instance.Instance``, no process."""

    def __init__(self, launcher: FakeLauncher, n: int) -> None:
        self._launcher = launcher
        self._hooks = launcher.hooks
        self.pid, self.id = n, f"fake-{n}"
        self.app = self.revision = self.kind = ""
        self.memory_mb = 0
        self.concurrency, self.inflight, self.served = 1, 0, 0
        self.init_ms = 0.0
        self.created = self.bound_at = self.last_used = time.monotonic()
        self.draining = self.dead = self.gone = False
        self.exit_reason: InvocationError | None = None
        self.log_window, self.log_lines = 0, 0
        self.on_exit: Callable[[FakeInstance], None] | None = None
        self._ended = asyncio.get_running_loop().create_future()
        self._pending: set[str] = set()
        self._script: Script | None = None

    async def bind(self, load: p.Load, init_timeout: float) -> p.Ready:
        self._script = self._launcher.scripts[load.app]
        self.app, self.revision, self.memory_mb = load.app, load.revision, load.memory_mb
        self.kind = self._script.kind
        self.bound_at = time.monotonic()
        self._launcher.bound.append((load.app, load.revision))
        return p.Ready(kind=self.kind, is_async=False, init_ms=self.init_ms, pid=self.pid)

    async def invoke(self, msg: p.HttpRequest | p.Event, timeout: float) -> p.Response:
        if self.dead or self._script is None:
            raise self.exit_reason or InvocationError("instance is gone", code="instance_crashed")
        self._pending.add(msg.id)
        try:
            out = self._script.handler(msg, self)
            if inspect.isawaitable(out):
                out = await asyncio.wait_for(out, timeout)
            return out
        except Crash:
            self._die(InvocationError("the instance exited while handling the request",
                                      code="instance_crashed"))
            raise self.exit_reason from None
        finally:
            self._pending.discard(msg.id)

    def log(self, request_id: str, line: str) -> None:
        """The instance writes a line (as an app's print would)."""
        self._hooks.after_log(self, p.Log(request_id=request_id, stream="stdout", line=line))

    def running_after(self, rid: str) -> None:
        """A scripted call has returned when it answers (no background work)."""
        return None

    def handling(self, request_id: str) -> bool:
        return request_id in self._pending

    def ended(self) -> asyncio.Future[None]:
        return self._ended

    def kill(self) -> None:
        if not self.dead:
            self._die(None)

    def shutdown(self) -> None:
        self.draining = True
        self.kill()

    def _die(self, err: InvocationError | None) -> None:
        self.dead = True
        self.exit_reason = err or InvocationError("stopped", code="instance_crashed")
        asyncio.get_running_loop().call_soon(self._gone)

    def _gone(self) -> None:
        self.gone = True
        self._launcher.live.discard(self)
        if self.on_exit is not None:
            self.on_exit(self)
        self._hooks.after_death(self)
        self._ended.set_result(None)


@dataclass
class FakeLauncher:
    """``skiff.instance.Launcher``'s interface over :class:`FakeInstance` s; ``scripts``
    says how each app answers (by app name, set before its deploy)."""

    scripts: dict[str, Script] = field(default_factory=dict)
    hooks: InstanceHooks = field(default_factory=InstanceHooks)
    cgroups: _NoCgroups = field(default_factory=_NoCgroups)
    live: set[FakeInstance] = field(default_factory=set)
    bound: list[tuple[str, str]] = field(default_factory=list)  # (app, revision) per bind
    retired: list[str] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    async def instance(self, spec: ZygoteSpec) -> FakeInstance:
        inst = FakeInstance(self, next(self._ids))
        self.live.add(inst)
        return inst

    async def warm(self, spec: ZygoteSpec) -> None:
        pass

    def retire(self, key: str, grace: float = 60.0) -> None:
        self.retired.append(key)

    def stats(self) -> dict:
        return {"fake": {"live": len(self.live)}}

    async def close(self, wait: float = 5.0) -> None:
        for inst in list(self.live):
            inst.kill()
        await asyncio.sleep(0)
