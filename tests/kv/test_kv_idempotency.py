"""Idempotent execution: a charge runs once under retries, on every store
(in memory, and KV-backed over MemoryKV and SQLiteKV); mismatched payloads,
live runs, failures and crashed runs are handled as Powertools does."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from skiff.sdk.idempotency import (
    Attempt,
    Idempotency,
    IdempotencyError,
    IdempotencyInProgress,
    IdempotencyKeyMismatch,
    IdempotencyRecord,
    IdempotencyStore,
    KVIdempotencyStore,
    MemoryIdempotencyStore,
    current_attempt,
    default_store,
    idempotent,
    payload_hash,
    set_default_store,
)
from skiff.store.kv import MemoryKV
from skiff.store.kv_sqlite import SQLiteKV


@pytest.fixture(params=["memory", "kv-memory", "kv-sqlite", "kv-postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path, kv_clock) -> Iterator[IdempotencyStore]:
    if request.param == "memory":
        yield MemoryIdempotencyStore()
        return
    if request.param == "kv-postgres":
        from skiff.store.kv_postgres import PostgresKV

        kv = PostgresKV(request.getfixturevalue("pg_database"), clock=kv_clock)
    else:
        kv = MemoryKV(clock=kv_clock) if request.param == "kv-memory" else \
            SQLiteKV(tmp_path / "kv.db", clock=kv_clock)
    yield KVIdempotencyStore(kv.scoped("shop"), clock=kv_clock)
    kv.close()


class Charger:
    """A side effect that must happen once per order: counts its charges."""

    def __init__(self) -> None:
        self.charges = 0

    def charge(self, amount: int) -> dict:
        self.charges += 1
        return {"charged": amount, "receipt": f"r-{self.charges}"}


def test_a_charge_runs_once_under_retries(store: IdempotencyStore, kv_clock) -> None:
    """Five deliveries of one order charge once and all return the first run's receipt."""
    engine = Idempotency(store, clock=kv_clock)
    charger = Charger()
    results = [engine.run("order-1", {"amount": 5}, lambda: charger.charge(5))
               for _ in range(5)]
    assert charger.charges == 1
    assert results == [{"charged": 5, "receipt": "r-1"}] * 5


def test_a_different_key_runs_again(store: IdempotencyStore, kv_clock) -> None:
    """Another idempotency key is another charge."""
    engine = Idempotency(store, clock=kv_clock)
    charger = Charger()
    engine.run("order-1", 1, lambda: charger.charge(1))
    engine.run("order-2", 1, lambda: charger.charge(1))
    assert charger.charges == 2


def test_payload_mismatch_is_422(store: IdempotencyStore, kv_clock) -> None:
    """Reusing a key with another payload raises idempotency_payload_mismatch and charges nothing."""
    engine = Idempotency(store, clock=kv_clock)
    charger = Charger()
    engine.run("order-1", {"amount": 5}, lambda: charger.charge(5))
    with pytest.raises(IdempotencyKeyMismatch) as info:
        engine.run("order-1", {"amount": 6}, lambda: charger.charge(6))
    assert (info.value.code, info.value.status) == ("idempotency_payload_mismatch", 422)
    assert charger.charges == 1


def test_a_live_run_makes_a_concurrent_retry_409(store: IdempotencyStore, kv_clock) -> None:
    """While one run holds a key, a concurrent run gets idempotency_in_progress."""
    engine = Idempotency(store, clock=kv_clock)
    entered, release = threading.Event(), threading.Event()
    results: list[object] = []

    def slow() -> str:
        entered.set()
        release.wait(30)
        return "done"

    worker = threading.Thread(target=lambda: results.append(engine.run("k", 1, slow)))
    worker.start()
    assert entered.wait(30)
    with pytest.raises(IdempotencyInProgress) as info:
        engine.run("k", 1, lambda: "second")
    assert (info.value.code, info.value.status) == ("idempotency_in_progress", 409)
    release.set()
    worker.join()
    assert results == ["done"]
    assert engine.run("k", 1, lambda: "third") == "done"


def test_a_failure_releases_the_key(store: IdempotencyStore, kv_clock) -> None:
    """When the function raises, its record is deleted and the retry runs (and charges once)."""
    engine = Idempotency(store, clock=kv_clock)
    charger = Charger()

    def flaky() -> dict:
        raise ConnectionError("payment provider down")

    with pytest.raises(ConnectionError):
        engine.run("order-1", 5, flaky)
    assert engine.run("order-1", 5, lambda: charger.charge(5)) == {"charged": 5,
                                                                   "receipt": "r-1"}
    assert engine.run("order-1", 5, lambda: charger.charge(5))["receipt"] == "r-1"
    assert charger.charges == 1


def test_a_crashed_run_is_taken_over_after_its_in_progress_timeout(store: IdempotencyStore,
                                                                   kv_clock) -> None:
    """A record left in progress by a dead run blocks retries only until its lease expires."""
    engine = Idempotency(store, clock=kv_clock)
    now = kv_clock()
    assert store.put_if_absent(_in_progress("order-1", now)) is not None
    with pytest.raises(IdempotencyInProgress):
        engine.run("order-1", 5, lambda: "retry", in_progress_timeout=60)
    kv_clock.advance(61)
    assert engine.run("order-1", 5, lambda: "retry") == "retry"


def _in_progress(key: str, now: float) -> IdempotencyRecord:
    """A record as a run that died mid-way leaves it: in progress, lease 60 s."""
    return IdempotencyRecord(key, "in_progress", payload_hash(5), now + 3600, now + 60)


def test_completed_records_expire(store: IdempotencyStore, kv_clock) -> None:
    """After `expires` seconds the key is fresh again and the function runs anew."""
    engine = Idempotency(store, clock=kv_clock)
    charger = Charger()
    engine.run("order-1", 5, lambda: charger.charge(5), expires=60)
    kv_clock.advance(59)
    engine.run("order-1", 5, lambda: charger.charge(5), expires=60)
    kv_clock.advance(2)
    engine.run("order-1", 5, lambda: charger.charge(5), expires=60)
    assert charger.charges == 2


def test_a_result_that_is_not_json_is_refused_and_released(store: IdempotencyStore,
                                                           kv_clock) -> None:
    """A result that cannot be replayed raises idempotency_result_not_json and frees the key."""
    engine = Idempotency(store, clock=kv_clock)
    with pytest.raises(IdempotencyError) as info:
        engine.run("k", 1, lambda: {1, 2})
    assert info.value.code == "idempotency_result_not_json"
    assert engine.run("k", 1, lambda: [1, 2]) == [1, 2]


def test_none_results_replay_as_none(store: IdempotencyStore, kv_clock) -> None:
    """A handler that returns None is still run only once."""
    engine = Idempotency(store, clock=kv_clock)
    charger = Charger()
    for _ in range(3):
        assert engine.run("k", 1, lambda: charger.charge(1) and None) is None
    assert charger.charges == 1


def test_payload_hash_ignores_key_order() -> None:
    """Equal JSON documents hash equally whatever their key order."""
    assert payload_hash({"a": 1, "b": [1, 2]}) == payload_hash({"b": [1, 2], "a": 1})
    assert payload_hash({"a": 1}) != payload_hash({"a": 2})


# -- the decorator -------------------------------------------------------------------
def sqs_record(order: str, receive_count: int) -> dict:
    return {"messageId": "m-1", "receiptHandle": f"rh-{receive_count}",
            "attributes": {"ApproximateReceiveCount": str(receive_count)},
            "body": order}


def test_decorator_charges_once_across_redeliveries(store: IdempotencyStore) -> None:
    """@idempotent keyed on the order charges once though each redelivery differs."""
    charger = Charger()

    @idempotent(key=lambda event: event["body"], store=store)
    def handler(event: dict, context: object) -> dict:
        return charger.charge(10)

    results = [handler(sqs_record("order-9", n), None) for n in (1, 2, 3)]
    assert charger.charges == 1 and results[0] == results[2]
    handler(sqs_record("order-10", 1), None)
    assert charger.charges == 2


def test_decorator_payload_check(store: IdempotencyStore) -> None:
    """With payload=, the same key and another payload is a mismatch."""
    @idempotent(key=lambda e: e["id"], payload=lambda e: e["amount"], store=store)
    def handler(event: dict, context: object) -> int:
        return event["amount"]

    assert handler({"id": "a", "amount": 1}, None) == 1
    with pytest.raises(IdempotencyKeyMismatch):
        handler({"id": "a", "amount": 2}, None)


def test_decorator_uses_the_contexts_remaining_time_as_lease(kv_clock) -> None:
    """The in-progress lease is the invocation's remaining time from a Lambda-style context."""
    store = MemoryIdempotencyStore()
    context = SimpleNamespace(get_remaining_time_in_millis=lambda: 12_000)
    seen: list[float | None] = []

    @idempotent(key=lambda e: e, store=store, clock=kv_clock)
    def handler(event: str, ctx: object) -> str:
        [record] = store._records.values()
        seen.append(record.in_progress_expiry)
        return "ok"

    handler("e", context)
    assert seen == [kv_clock.now + 12.0]


def test_decorator_without_a_key_runs_unprotected(store: IdempotencyStore) -> None:
    """An event whose key is None runs every time (with a warning), like Powertools."""
    charger = Charger()

    @idempotent(key=lambda e: e.get("id"), store=store)
    def handler(event: dict, context: object) -> dict:
        return charger.charge(1)

    handler({}, None)
    handler({}, None)
    assert charger.charges == 2


def test_decorator_on_an_async_handler(store: IdempotencyStore) -> None:
    """async handlers are awaited and deduplicated the same way."""
    charger = Charger()

    @idempotent(key=lambda e: e["id"], store=store)
    async def handler(event: dict, context: object) -> dict:
        await asyncio.sleep(0)
        return charger.charge(3)

    async def main() -> list[dict]:
        return [await handler({"id": "x"}, None) for _ in range(3)]

    assert asyncio.run(main()) == [{"charged": 3, "receipt": "r-1"}] * 3
    assert charger.charges == 1


def test_decorator_falls_back_to_the_pluggable_default_store() -> None:
    """Without store=, the module default is used, resolved per call so the platform can set it late."""
    first, second = MemoryIdempotencyStore(), MemoryIdempotencyStore()

    @idempotent(key=lambda e: e)
    def handler(event: str, context: object) -> str:
        return "ok"

    try:
        set_default_store(first)
        handler("e", None)
        set_default_store(second)
        handler("e", None)
        assert len(first._records) == len(second._records) == 1
        assert default_store() is second
    finally:
        set_default_store(None)
    assert isinstance(default_store(), MemoryIdempotencyStore)


def test_handlers_with_the_same_key_do_not_collide(store: IdempotencyStore) -> None:
    """Two handlers keyed on the same value keep separate records (the key is namespaced by handler)."""
    @idempotent(key=lambda e: e, store=store)
    def one(event: str, context: object) -> str:
        return "one"

    @idempotent(key=lambda e: e, store=store)
    def two(event: str, context: object) -> str:
        return "two"

    assert (one("k", None), two("k", None)) == ("one", "two")


# -- a dead attempt's record is taken over (its delivery lease is gone) ---------------
def _left_by(attempt: Attempt, key: str, now: float) -> IdempotencyRecord:
    """A record as an attempt that died mid-way leaves it, with a long lease still to run."""
    return IdempotencyRecord(key, "in_progress", payload_hash(5), now + 3600, now + 900,
                             invocation=attempt.invocation, attempt=attempt.token)


def test_a_dead_attempt_of_the_same_invocation_is_taken_over_at_once(
        store: IdempotencyStore, kv_clock) -> None:
    """A redelivery of the invocation whose attempt left the record runs now, not after the lease:
    the platform runs one attempt of an invocation at a time, so that attempt is over."""
    engine = Idempotency(store, clock=kv_clock)
    charger = Charger()
    assert store.put_if_absent(_left_by(Attempt("inv-1", "dead"), "order-1", kv_clock())) is not None
    again = Attempt("inv-1", "next")
    assert engine.run("order-1", 5, lambda: charger.charge(5), attempt=again)["receipt"] == "r-1"
    assert engine.run("order-1", 5, lambda: charger.charge(5), attempt=again)["receipt"] == "r-1"
    assert charger.charges == 1


def test_a_live_attempt_of_another_invocation_still_holds_the_key(
        store: IdempotencyStore, kv_clock) -> None:
    """Another invocation with the same key cannot know the holder is dead: it gets 409."""
    engine = Idempotency(store, clock=kv_clock)
    assert store.put_if_absent(_left_by(Attempt("inv-1", "live"), "order-1", kv_clock())) is not None
    with pytest.raises(IdempotencyInProgress):
        engine.run("order-1", 5, lambda: "other", attempt=Attempt("inv-2", "other"))


def test_the_same_attempt_does_not_take_over_its_own_record(
        store: IdempotencyStore, kv_clock) -> None:
    """A re-entrant call inside the attempt that holds the key is still in progress."""
    engine = Idempotency(store, clock=kv_clock)
    me = Attempt("inv-1", "me")
    assert store.put_if_absent(_left_by(me, "order-1", kv_clock())) is not None
    with pytest.raises(IdempotencyInProgress):
        engine.run("order-1", 5, lambda: "again", attempt=me)


def test_the_dead_attempt_cannot_complete_a_record_taken_over(
        store: IdempotencyStore, kv_clock) -> None:
    """If the old attempt was not quite dead, its completion loses the compare-and-set and the
    new attempt's result stays."""
    engine = Idempotency(store, clock=kv_clock)
    old = store.put_if_absent(_left_by(Attempt("inv-1", "old"), "order-1", kv_clock()))
    assert old is not None
    assert engine.run("order-1", 5, lambda: "new", attempt=Attempt("inv-1", "new")) == "new"
    assert engine._complete(old, "old") == "old"  # logged, not stored
    assert engine.run("order-1", 5, lambda: "third", attempt=Attempt("inv-9", "x")) == "new"


def test_the_attempt_identity_is_stored_with_the_record(store: IdempotencyStore,
                                                        kv_clock) -> None:
    """The in-progress record names its invocation and attempt (so the KV round trip keeps them)."""
    engine = Idempotency(store, clock=kv_clock)
    seen: list[tuple[str | None, str | None]] = []

    def look() -> str:
        record = store.get("order-1")
        assert record is not None
        seen.append((record.invocation, record.attempt))
        return "ok"

    engine.run("order-1", 5, look, attempt=Attempt("inv-1", "tok"))
    assert seen == [("inv-1", "tok")]


def test_decorator_takes_over_a_record_its_invocation_left(store: IdempotencyStore) -> None:
    """@idempotent names the attempt by the context's request id (and this process), so the
    redelivery of an async invocation whose instance died is charged, once, at once."""
    charger = Charger()

    @idempotent(key=lambda e: e["id"], store=store)
    def handler(event: dict, context: object) -> dict:
        return charger.charge(1)

    k = next(iter(_keys_of(handler, {"id": "o-1"})))
    store.put_if_absent(IdempotencyRecord(k, "in_progress", payload_hash("o-1"), 4e9, 4e9,
                                          invocation="req-1", attempt="a-dead-process"))
    context = SimpleNamespace(aws_request_id="req-1")
    assert handler({"id": "o-1"}, context) == {"charged": 1, "receipt": "r-1"}
    assert handler({"id": "o-1"}, SimpleNamespace(aws_request_id="req-2"))["receipt"] == "r-1"
    assert charger.charges == 1


def test_the_attempt_token_differs_in_a_forked_child() -> None:
    """Each process (each instance forked from a zygote) is its own attempt."""
    import os

    parent = current_attempt(SimpleNamespace(aws_request_id="r"))
    assert parent is not None and parent.invocation == "r"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        child = current_attempt(SimpleNamespace(aws_request_id="r"))
        os.write(write, (child.token if child else "").encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    token = os.read(read, 200).decode()
    os.close(read)
    assert token and token != parent.token
    assert current_attempt(None) is None  # nothing names the invocation: no takeover


def _keys_of(handler, event: dict) -> list[str]:
    """The record key @idempotent uses for ``event`` (handler name # key hash)."""
    return [f"{handler.__module__}.{handler.__qualname__}#{payload_hash(event['id'])}"]
