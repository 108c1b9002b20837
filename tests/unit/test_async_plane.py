"""Async invocation retries (in-process, fake clock): a run blocked only by another live run
of its idempotency key waits for that run instead of spending its attempts; the lease of a
delivery outlives its attempt."""

from __future__ import annotations

import asyncio

import pytest

from skiff.bus import MemoryBroker
from skiff.errors import InvocationError, TooManyRequests
from skiff.instance import protocol as p
from skiff.manifest import parse_manifest
from skiff.store.trigger_state import SQLiteTriggerState
from skiff.triggers import EventPlane
from skiff.triggers.plane import MAX_IN_PROGRESS_WAITS, async_queue

IN_PROGRESS = ("IdempotencyInProgress: a run with idempotency key 'k' is in progress; "
               "retry later")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def manifest():
    return parse_manifest({
        "apiVersion": "skiff.dev/v1", "kind": "MicroApp", "metadata": {"name": "shop"},
        "spec": {"handler": "app:handler", "resources": {"timeout": 20},
                 "async": {"maxAttempts": 3}}})


def drive(tmp_path, outcomes: list[str | None]) -> tuple[dict, list[float], MemoryBroker]:
    """Deliver one async invocation until it settles; ``outcomes`` are the handler's errors
    per attempt (None: success). Returns its status, the delays before each retry."""
    clock = Clock()
    broker = MemoryBroker(clock=clock)
    left = list(outcomes)

    async def invoke(inv):  # noqa: ANN001, ANN202 - the plane hands over one Invocation
        error = left.pop(0)
        if error is not None:
            raise InvocationError(error, code="handler_error")
        return p.Response(id=inv.request.id, body=b'"ok"')

    async def main() -> tuple[dict, list[float]]:
        plane = EventPlane(broker, SQLiteTriggerState(tmp_path / "events.db"), invoke,
                           log=lambda *a: None)
        plane.apps["shop"] = type("W", (), {"manifest": manifest()})()
        plane.enqueue_invocation("shop", p.Event(id="inv-1", payload=b"{}"))
        delays: list[float] = []
        while True:
            [d] = broker.receive(async_queue("shop"), max_messages=1, visibility_timeout=70)
            await plane._run_async("shop", d)
            status = plane.status("inv-1")
            if status["status"] in ("succeeded", "failed"):
                return status, delays
            visible = broker.next_visible_at(async_queue("shop"))
            assert visible is not None
            delays.append(round(visible - clock.now, 3))
            clock.now = visible

    status, delays = asyncio.run(main())
    return status, delays, broker


def test_a_run_blocked_by_a_live_holder_waits_its_timeout_without_spending_attempts(tmp_path):
    """Four IdempotencyInProgress failures, then success: with maxAttempts 3 it still
    succeeds; each of those retries comes after the app's timeout (when any holder has ended)."""
    status, delays, _ = drive(tmp_path, [IN_PROGRESS] * 4 + [None])
    assert status["status"] == "succeeded"
    assert delays == [20.0] * 4


def test_other_errors_still_spend_attempts(tmp_path):
    """A handler error counts as before: three attempts, then the DLQ (waits not counted)."""
    status, delays, broker = drive(tmp_path, [IN_PROGRESS, "ValueError: bad", "ValueError: bad",
                                              "ValueError: bad"])
    assert status["status"] == "failed"
    assert delays[0] == 20.0 and len(delays) == 3
    assert [m.message_id for m in broker.peek("shop-dlq")]


def test_in_progress_waits_are_bounded(tmp_path):
    """An app that always says "in progress" (or a record that never ends) still reaches the
    DLQ: after MAX_IN_PROGRESS_WAITS waits, the failures count."""
    status, delays, _ = drive(tmp_path, [IN_PROGRESS] * (MAX_IN_PROGRESS_WAITS + 3))
    assert status["status"] == "failed"
    assert len(delays) == MAX_IN_PROGRESS_WAITS + 2


def test_pending_async_invocations_are_bounded_per_app(tmp_path):
    """Past its bound of accepted, unsettled async invocations an app gets 429 (anyone
    may ask for them over HTTP, and each is kept on disk); another app is not affected,
    and a settled invocation frees its place."""
    broker = MemoryBroker(clock=Clock())

    async def invoke(inv):  # noqa: ANN001, ANN202
        return p.Response(id=inv.request.id, body=b'"ok"')

    async def main() -> None:
        plane = EventPlane(broker, SQLiteTriggerState(tmp_path / "events.db"), invoke,
                           log=lambda *a: None, max_pending_per_app=2)
        plane.apps["shop"] = type("W", (), {"manifest": manifest()})()
        plane.enqueue_invocation("shop", p.Event(id="a", payload=b"{}"))
        plane.enqueue_invocation("shop", p.Event(id="b", payload=b"{}"))
        with pytest.raises(TooManyRequests) as refused:
            plane.enqueue_invocation("shop", p.Event(id="c", payload=b"{}"))
        assert refused.value.status == 429
        assert "SKIFF_ASYNC_MAX_PENDING_PER_APP" in refused.value.message
        plane.enqueue_invocation("other", p.Event(id="x", payload=b"{}"))
        [d] = broker.receive(async_queue("shop"), max_messages=1, visibility_timeout=70)
        await plane._run_async("shop", d)
        plane.enqueue_invocation("shop", p.Event(id="c", payload=b"{}"))

    asyncio.run(main())
