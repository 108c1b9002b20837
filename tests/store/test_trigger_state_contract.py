"""The one contract every TriggerState backend keeps (events.db's SQLite and
PostgresTriggerState via the ``trigger_state`` fixture)."""

from __future__ import annotations

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
