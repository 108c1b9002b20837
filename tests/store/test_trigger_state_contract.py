"""The one contract every TriggerState backend keeps (events.db's SQLite, shared and
exclusive, and PostgresTriggerState via the ``trigger_state`` fixture; two nodes on
one database via ``two_trigger_states``)."""

from __future__ import annotations

import threading
import time

import pytest

from skiff.store.trigger_state import TriggerState


def test_an_async_invocation_goes_from_queued_to_done(trigger_state: TriggerState) -> None:
    """accept_async records 'queued'; set_async_status records the outcome with its result."""
    trigger_state.accept_async("inv-1", "a", 10.0)
    assert trigger_state.async_status("inv-1") == {
        "id": "inv-1", "app": "a", "status": "queued", "attempts": 0, "created": 10.0,
        "updated": 10.0, "status_code": None, "result": None, "error": None}
    trigger_state.set_async_status("inv-1", "succeeded", 2, 12.5, code=200, result=b'{"ok":1}')
    got = trigger_state.async_status("inv-1")
    assert (got["status"], got["attempts"], got["updated"], got["status_code"],
            got["result"], got["error"]) == ("succeeded", 2, 12.5, 200, b'{"ok":1}', None)
    assert trigger_state.async_status("nope") is None


def test_accepting_an_id_twice_keeps_the_first(trigger_state: TriggerState) -> None:
    """A redelivered accept (same id) does not reset a status already recorded."""
    trigger_state.accept_async("inv-1", "a", 10.0)
    trigger_state.set_async_status("inv-1", "failed", 3, 11.0, code=500, error="boom")
    trigger_state.accept_async("inv-1", "a", 20.0)
    got = trigger_state.async_status("inv-1")
    assert (got["status"], got["error"], got["created"]) == ("failed", "boom", 10.0)


def test_checkpoints_only_move_forward(trigger_state: TriggerState) -> None:
    """A schedule's checkpoint is None until set, then moves forward, never back."""
    assert trigger_state.checkpoint("a", "0:rate(1 minute)@UTC") is None
    trigger_state.set_checkpoint("a", "0:rate(1 minute)@UTC", 100.0)
    trigger_state.set_checkpoint("a", "0:rate(1 minute)@UTC", 160.0)
    trigger_state.set_checkpoint("a", "0:rate(1 minute)@UTC", 120.0)
    assert trigger_state.checkpoint("a", "0:rate(1 minute)@UTC") == 160.0
    assert trigger_state.checkpoint("b", "0:rate(1 minute)@UTC") is None


def test_forget_app_drops_only_that_apps_state(trigger_state: TriggerState) -> None:
    """forget_app deletes the app's statuses and checkpoints; another app's stay."""
    for app in ("a", "b"):
        trigger_state.accept_async(f"inv-{app}", app, 1.0)
        trigger_state.set_checkpoint(app, "k", 5.0)
    trigger_state.forget_app("a")
    assert trigger_state.async_status("inv-a") is None
    assert trigger_state.checkpoint("a", "k") is None
    assert trigger_state.async_status("inv-b")["app"] == "b"
    assert trigger_state.checkpoint("b", "k") == 5.0


def test_accept_says_whether_the_id_is_new(trigger_state: TriggerState) -> None:
    """A second accept of one id is no new invocation (a retried HTTP accept, a fire
    enqueued again after a crash)."""
    assert trigger_state.accept_async("inv-1", "a", 1.0) is True
    assert trigger_state.accept_async("inv-1", "a", 2.0) is False


def test_the_backlog_is_each_apps_pending_count_and_oldest(trigger_state: TriggerState) -> None:
    """What metrics show at scrape time: per app with pending work, how many and since when."""
    assert trigger_state.async_backlog() == []
    trigger_state.accept_async("a1", "a", 5.0)
    trigger_state.accept_async("a2", "a", 3.0)
    trigger_state.accept_async("b1", "b", 7.0)
    trigger_state.accept_async("c1", "c", 1.0)
    trigger_state.set_async_status("c1", "succeeded", 1, 2.0, code=200)
    trigger_state.set_async_status("a1", "retrying", 1, 6.0, error="x")
    assert trigger_state.async_backlog() == [("a", 2, 3.0), ("b", 1, 7.0)]


def test_pending_counts_queued_and_retrying_per_app(trigger_state: TriggerState) -> None:
    """The bound counts an app's invocations accepted and not settled; a settled one
    leaves the count, one retried after a success (a redelivery) joins it again."""
    assert trigger_state.pending_async("a") == 0
    for i in range(4):
        trigger_state.accept_async(f"inv-{i}", "a", 1.0)
    trigger_state.accept_async("inv-0", "a", 1.0)
    trigger_state.accept_async("other", "b", 1.0)
    assert trigger_state.pending_async("a") == 4
    trigger_state.set_async_status("inv-0", "retrying", 1, 2.0, error="x")
    trigger_state.set_async_status("inv-1", "succeeded", 1, 2.0, code=200)
    trigger_state.set_async_status("inv-2", "failed", 3, 2.0, code=500)
    assert trigger_state.pending_async("a") == 2
    trigger_state.set_async_status("inv-1", "retrying", 2, 3.0, error="x")
    trigger_state.set_async_status("nope", "succeeded", 1, 3.0)
    assert (trigger_state.pending_async("a"), trigger_state.pending_async("b")) == (3, 1)
    trigger_state.forget_app("a")
    assert trigger_state.pending_async("a") == 0


def test_waits_are_counted_per_invocation(trigger_state: TriggerState) -> None:
    """0 until set; 0 forgets; an app's waits go with the app."""
    trigger_state.accept_async("inv-1", "a", 1.0)
    trigger_state.accept_async("inv-2", "b", 1.0)
    assert trigger_state.async_waits("inv-1") == 0
    trigger_state.set_async_waits("inv-1", 1)
    trigger_state.set_async_waits("inv-1", 2)
    trigger_state.set_async_waits("inv-2", 1)
    assert trigger_state.async_waits("inv-1") == 2
    trigger_state.set_async_waits("inv-2", 0)
    assert trigger_state.async_waits("inv-2") == 0
    trigger_state.set_async_waits("inv-2", 3)
    trigger_state.forget_app("a")
    assert (trigger_state.async_waits("inv-1"), trigger_state.async_waits("inv-2")) == (0, 3)


KEY = "0:rate(1 minute)@UTC"


def test_a_claim_reads_the_checkpoint_and_moves_it_at_its_end(
        trigger_state: TriggerState) -> None:
    """A new schedule has none; advance is written when the claim ends, never behind;
    a claim without advance moves nothing."""
    with trigger_state.claim_schedule("a", KEY) as claim:
        assert claim.last is None
        claim.advance(100.0)
    assert trigger_state.checkpoint("a", KEY) == 100.0
    with trigger_state.claim_schedule("a", KEY) as claim:
        assert claim.last == 100.0
        claim.advance(90.0)
    with trigger_state.claim_schedule("a", KEY) as claim:
        assert claim.last == 100.0
    assert trigger_state.checkpoint("a", KEY) == 100.0


def test_a_claim_that_raised_moves_nothing(trigger_state: TriggerState) -> None:
    """A claimant that dies after enqueuing leaves the checkpoint: the next claimant
    enqueues those fires again (at least once), and what it recorded inside is undone."""
    trigger_state.set_checkpoint("a", KEY, 100.0)
    with pytest.raises(RuntimeError), trigger_state.claim_schedule("a", KEY) as claim:
        trigger_state.accept_async("fire-160", "a", 161.0)
        claim.advance(161.0)
        raise RuntimeError("the node died")
    assert trigger_state.checkpoint("a", KEY) == 100.0
    with trigger_state.claim_schedule("a", KEY) as claim:
        assert claim.last == 100.0
        trigger_state.accept_async("fire-160", "a", 162.0)
        claim.advance(162.0)
    assert trigger_state.checkpoint("a", KEY) == 162.0
    assert trigger_state.pending_async("a") == 1


def test_two_nodes_racing_for_a_due_fire_enqueue_it_once(
        two_trigger_states: tuple[TriggerState, TriggerState]) -> None:
    """Two claimants on one database at the same fire: the second waits for the first's
    claim, then reads the checkpoint it left and finds the fire enqueued."""
    first, second = two_trigger_states
    first.set_checkpoint("a", KEY, 100.0)
    enqueued: list[tuple[str, float]] = []
    inside = threading.Event()

    def node(name: str, state: TriggerState, now: float) -> None:
        with state.claim_schedule("a", KEY) as claim:
            inside.set()
            if claim.last < 160.0 <= now:  # the fire at 160 is due
                time.sleep(0.2)  # the other node runs meanwhile: were it not held out...
                enqueued.append((name, now))
            claim.advance(now)

    one = threading.Thread(target=node, args=("first", first, 161.0))
    one.start()
    assert inside.wait(10)
    two = threading.Thread(target=node, args=("second", second, 161.5))
    two.start()
    one.join(10)
    two.join(10)
    assert enqueued == [("first", 161.0)]
    assert second.checkpoint("a", KEY) == 161.5
