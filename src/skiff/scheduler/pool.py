"""Per-app instance pools: admission, per-instance concurrency, the bounded wait
queue (then 429), min instances and idle scale-to-zero.

An instance holds its slot under ``maxInstances`` from the moment it starts
until the kernel says it is gone: one asked to stop, or killed, still runs
until then. A request may always wait for a slot that an instance starting (or
yet to start, within ``maxInstances``) will offer; ``maxQueue`` bounds only the
requests waiting beyond those."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from skiff import ipc as p
from skiff.errors import InvocationError, TooManyRequests
from skiff.instance import Instance, Launcher, Stream, WebSocket, ZygoteSpec
from skiff.scheduler.policy import (
    InstanceView,
    Plan,
    PoolView,
    WarmWindow,
    plan,
    warm_minimum,
)


@dataclass(frozen=True)
class Target:
    """What a pool runs: one revision of one app, with its limits."""

    app: str
    revision: str
    zygote: ZygoteSpec
    load: p.Load
    concurrency: int | None = None  # None: 1 for sync handlers, many for ASGI
    min_instances: int = 0
    max_instances: int = 10
    idle_timeout: float = 300.0
    max_queue: int = 100
    timeout: float = 30.0
    init_timeout: float = 60.0
    warm: tuple[WarmWindow, ...] = ()


@dataclass
class Served:
    """What the gateway learns about one invocation besides its response."""

    instance: str
    cold: bool
    init_ms: float
    queued_ms: float
    revision: str


@dataclass
class PoolStats:
    created: int = 0
    cold_starts: int = 0
    init_failures: int = 0
    throttled: int = 0
    created_at: deque[float] = field(default_factory=lambda: deque(maxlen=1000))


_NOTHING = Plan()


class Pool:
    def __init__(self, target: Target, launcher: Launcher) -> None:
        self.target = target
        self.launcher = launcher
        self.instances: list[Instance] = []
        self.draining: set[Instance] = set()
        self.starting = 0
        self.waiters: deque[asyncio.Future[Instance]] = deque()
        self.stats = PoolStats()
        self.learned_concurrency = 1  # auto concurrency, known once an instance said its kind
        self._starting: set[asyncio.Task] = set()

    # -- the request path -------------------------------------------------
    async def invoke(self, msg: p.HttpRequest | p.Event | p.WsConnect
                     ) -> tuple[p.Response | Stream | WebSocket, Served]:
        arrived = time.monotonic()
        inst = self._free_instance()
        if inst is None:
            inst = await self._wait_for_instance()
        target = self.target
        cold = inst.served == 0 and inst.bound_at >= arrived
        if cold:
            self.stats.cold_starts += 1
        started = time.monotonic()
        try:
            resp = await inst.invoke(msg, target.timeout)
        finally:
            # a streamed response, background tasks after the response, a cancelled
            # call: the instance stays busy (its slot held) until the call returns in it
            running = inst.running_after(msg.id)
            if running is None:
                self._release(inst)
            else:
                running.add_done_callback(lambda _: self._release(inst))
        return resp, Served(instance=inst.id, cold=cold, init_ms=inst.init_ms if cold else 0.0,
                            queued_ms=(started - arrived) * 1000, revision=inst.revision)

    def _free_instance(self) -> Instance | None:
        # Oldest first: traffic packs onto old instances and the newest go idle
        # and get reaped, which keeps the pool small.
        for inst in self.instances:
            if inst.inflight < inst.concurrency and not inst.dead:
                inst.inflight += 1
                return inst
        return None

    def _stopping(self) -> int:
        return len(self.draining) + sum(1 for i in self.instances if i.dead)

    def _coming(self) -> int:
        """Requests that instances starting, or free to start, will take."""
        t = self.target
        held = sum(1 for i in self.instances if not i.dead) + self._stopping()
        return max(0, t.max_instances - held) * (t.concurrency or self.learned_concurrency)

    async def _wait_for_instance(self) -> Instance:
        if len(self.waiters) >= self.target.max_queue + self._coming():
            self.stats.throttled += 1
            raise TooManyRequests(
                f"app {self.target.app} is at its maxInstances ({self.target.max_instances}) and "
                "its wait queue is full; retry later or raise spec.scaling", retry_after=1)
        fut: asyncio.Future[Instance] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        self.rescale()
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.target.timeout)
        except TimeoutError:
            if fut.done() and not fut.exception():
                return fut.result()
            fut.cancel()
            self.stats.throttled += 1
            raise TooManyRequests(
                f"app {self.target.app} stayed busy for {self.target.timeout:g}s; retry later "
                "or raise spec.scaling.maxInstances", retry_after=1) from None
        finally:
            if fut in self.waiters:
                self.waiters.remove(fut)

    def _release(self, inst: Instance) -> None:
        inst.inflight -= 1
        inst.served += 1
        inst.last_used = time.monotonic()
        if inst.draining:
            if inst.inflight == 0:
                inst.shutdown()
        elif not inst.dead:
            self._hand_off(inst)

    def _hand_off(self, inst: Instance) -> None:
        while self.waiters and inst.inflight < inst.concurrency:
            fut = self.waiters.popleft()
            if not fut.done():
                inst.inflight += 1
                fut.set_result(inst)

    # -- scaling ------------------------------------------------------------
    def view(self) -> PoolView:
        t = self.target
        return PoolView(
            instances=tuple(InstanceView(i.id, i.inflight, i.last_used)
                            for i in self.instances if not i.dead),
            starting=self.starting, waiting=sum(1 for f in self.waiters if not f.done()),
            concurrency=t.concurrency or self.learned_concurrency,
            min_instances=warm_minimum(t.min_instances, t.warm, datetime.now()),
            max_instances=t.max_instances, idle_timeout=t.idle_timeout,
            stopping=self._stopping())

    def rescale(self, now: float | None = None) -> Plan:
        t = self.target
        if not (self.instances or self.starting or self.waiters or t.min_instances or t.warm):
            # scaled to zero and nothing asked: the plan is empty, so skip building it (the
            # tick over 1,000 such apps was ~4 % of a core, measured: bench/idle.py)
            return _NOTHING
        decision = plan(self.view(), time.monotonic() if now is None else now)
        for _ in range(decision.start):
            self.starting += 1
            task = asyncio.ensure_future(self._start_one(self.target))
            self._starting.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._starting.discard)
        if decision.stop:
            stop = set(decision.stop)
            for inst in [i for i in self.instances if i.id in stop]:
                self._retire(inst)
        return decision

    async def _start_one(self, target: Target) -> None:
        try:
            inst = await self.launcher.instance(target.zygote)
            inst.on_exit = self._on_exit
            await inst.bind(target.load, target.init_timeout)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the slot is given back
            self.starting -= 1
            self.stats.init_failures += 1
            self._fail_waiters(exc)
            return
        self.starting -= 1
        self.adopt(inst, target)

    def adopt(self, inst: Instance, target: Target) -> None:
        """Take a bound instance into the pool (also used for the deploy's trial instance)."""
        inst.on_exit = self._on_exit
        inst.concurrency = target.concurrency or (64 if inst.kind == "asgi" else 1)
        self.learned_concurrency = inst.concurrency
        self.stats.created += 1
        self.stats.created_at.append(time.time())
        if target is not self.target or inst.dead:
            self._retire(inst)
            return
        if len(self.instances) >= target.max_instances:  # e.g. a deploy's trial instance
            self._retire(inst)
            return
        inst.last_used = time.monotonic()
        self.instances.append(inst)
        self._hand_off(inst)

    def _fail_waiters(self, exc: Exception) -> None:
        err = exc if isinstance(exc, InvocationError) else InvocationError(
            getattr(exc, "message", str(exc)), code=getattr(exc, "code", "init_failed"),
            **getattr(exc, "details", {}))
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(err)

    def _retire(self, inst: Instance) -> None:
        if inst in self.instances:
            self.instances.remove(inst)
        inst.draining = True
        self.draining.add(inst)
        if inst.inflight == 0:
            inst.shutdown()

    def _on_exit(self, inst: Instance) -> None:
        if inst in self.instances:
            self.instances.remove(inst)
        self.draining.discard(inst)
        if self.waiters:
            self.rescale()

    def stop_all(self) -> int:
        """Retire every instance now (they finish what they hold). Returns how many."""
        stopping = list(self.instances)
        for inst in stopping:
            self._retire(inst)
        return len(stopping)

    def set_target(self, target: Target) -> None:
        """Switch to a new revision: old instances finish what they hold, then exit.
        The caller rescales (after adopting a trial instance, if it has one)."""
        self.target = target
        for inst in list(self.instances):
            self._retire(inst)

    def close(self) -> None:
        for inst in [*self.instances, *self.draining]:
            inst.kill()
        self.instances.clear()
        self._fail_waiters(InvocationError("the platform is shutting down", code="shutting_down",
                                           status=503))
