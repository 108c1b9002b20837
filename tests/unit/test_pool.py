"""The pool's admission and slot accounting, with stand-in instances (no processes)."""

from __future__ import annotations

import asyncio

import pytest

from skiff.errors import TooManyRequests
from skiff.instance import ZygoteSpec
from skiff.instance import protocol as p
from skiff.scheduler import Pool, Target


class FakeInstance:
    """What the pool uses of an Instance; ``bind`` waits until the test lets it."""

    def __init__(self, n: int, bound: asyncio.Event) -> None:
        self.id = f"i-{n}"
        self.kind, self.revision, self.init_ms = "lambda", "r1", 0.0
        self.concurrency, self.inflight, self.served = 1, 0, 0
        self.bound_at = self.last_used = 0.0
        self.dead = self.draining = False
        self.on_exit = None
        self._bound = bound

    async def bind(self, load, init_timeout):  # noqa: ANN001
        await self._bound.wait()

    async def invoke(self, msg, timeout):  # noqa: ANN001
        return p.Response(id=msg.id, status=200)

    def running_after(self, rid):  # noqa: ANN001
        return None

    def shutdown(self) -> None:
        self.draining = True

    def kill(self) -> None:
        self.dead = True


class FakeLauncher:
    def __init__(self) -> None:
        self.bound = asyncio.Event()
        self.made: list[FakeInstance] = []

    async def instance(self, spec: ZygoteSpec) -> FakeInstance:
        inst = FakeInstance(len(self.made), self.bound)
        self.made.append(inst)
        return inst


def _target(**kw) -> Target:
    load = p.Load(app="a", revision="r1", code_dir="/x", handler="h:h", kind=None)
    return Target(app="a", revision="r1", zygote=ZygoteSpec(key="default", python="/p"),
                  load=load, concurrency=1, timeout=5, **kw)


def _request(n: int) -> p.HttpRequest:
    return p.HttpRequest(id=str(n), method="GET", path="/", headers=[], body=b"")


def test_max_queue_zero_lets_a_request_wait_for_the_instance_it_starts():
    """maxQueue: 0 bounds the wait beyond the instances starting within
    maxInstances, not the wait for them."""

    async def run() -> None:
        launcher = FakeLauncher()
        pool = Pool(_target(max_instances=2, max_queue=0), launcher)  # type: ignore[arg-type]
        first = asyncio.ensure_future(pool.invoke(_request(1)))
        second = asyncio.ensure_future(pool.invoke(_request(2)))
        await asyncio.sleep(0)
        third = asyncio.ensure_future(pool.invoke(_request(3)))  # beyond maxInstances
        with pytest.raises(TooManyRequests):
            await third
        launcher.bound.set()
        for fut in (first, second):
            resp, _ = await fut
            assert resp.status == 200
        assert len(launcher.made) == 2

    asyncio.run(run())


def test_max_queue_still_bounds_the_wait_beyond_that():
    async def run() -> None:
        launcher = FakeLauncher()
        pool = Pool(_target(max_instances=1, max_queue=1), launcher)  # type: ignore[arg-type]
        calls = [asyncio.ensure_future(pool.invoke(_request(n))) for n in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(TooManyRequests):
            await pool.invoke(_request(9))
        launcher.bound.set()
        assert [(await c)[0].status for c in calls] == [200, 200]

    asyncio.run(run())


def test_an_instance_being_stopped_holds_its_slot_until_it_is_gone():
    """A killed or draining instance still counts against maxInstances: the pool
    starts its replacement only once the instance has exited."""

    async def run() -> None:
        launcher = FakeLauncher()
        launcher.bound.set()
        pool = Pool(_target(max_instances=1), launcher)  # type: ignore[arg-type]
        await pool.invoke(_request(1))
        old = launcher.made[0]
        old.kill()  # e.g. its handler timed out; the process may still be running
        waiting = asyncio.ensure_future(pool.invoke(_request(2)))
        await asyncio.sleep(0.01)
        assert len(launcher.made) == 1 and not waiting.done()
        pool._on_exit(old)  # the kernel says it is gone
        resp, _ = await waiting
        assert resp.status == 200 and len(launcher.made) == 2

    asyncio.run(run())


def test_a_pool_scaled_to_zero_is_rescaled_without_building_a_plan(monkeypatch):
    """The autoscaler's tick over a scaled-to-zero app with nothing asked costs no plan (the
    tick over 1,000 idle apps was most of an idle platform's CPU); one with a minimum, or a
    request waiting, still plans and starts."""
    import skiff.scheduler.pool as pool_module

    planned: list[object] = []
    real = pool_module.plan
    monkeypatch.setattr(pool_module, "plan", lambda view, now: planned.append(view) or real(view, now))

    async def run() -> None:
        launcher = FakeLauncher()
        idle = Pool(_target(max_instances=2), launcher)  # type: ignore[arg-type]
        assert idle.rescale().start == 0 and planned == [] and launcher.made == []
        warm = Pool(_target(max_instances=2, min_instances=1), launcher)  # type: ignore[arg-type]
        assert warm.rescale().start == 1 and len(planned) == 1
        launcher.bound.set()
        await asyncio.sleep(0.01)

    asyncio.run(run())
