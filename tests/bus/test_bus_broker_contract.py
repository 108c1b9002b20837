"""The one contract every Broker backend keeps (run against MemoryBroker and
SQLiteBroker by the ``broker`` fixture). Time moves only through ``clock``."""

from __future__ import annotations

import asyncio
import threading

import pytest

from skiff.bus import Broker, InvalidMessage, InvalidReceipt, Outgoing
from skiff.errors import PayloadTooLarge

Q = "orders"
DLQ = "orders-dlq"


def test_send_receive_ack(broker: Broker, clock) -> None:
    """A sent message is delivered once with its body, attributes and times, and ack deletes it."""
    mid = broker.send(Q, b"hello", attributes={"traceparent": "00-abc"})
    [d] = broker.receive(Q)
    assert (d.queue, d.message_id, d.body, d.attributes) == (Q, mid, b"hello",
                                                             {"traceparent": "00-abc"})
    assert d.receive_count == 1
    assert d.sent_at == d.first_received_at == clock.now
    assert broker.ack(Q, d.receipt) is True
    assert broker.receive(Q) == []
    assert broker.peek(Q) == []


def test_leased_message_is_invisible_until_its_visibility_timeout(broker: Broker, clock) -> None:
    """A lease hides the message; when it runs out the message comes back with receive_count 2."""
    broker.send(Q, b"x")
    [first] = broker.receive(Q, visibility_timeout=30)
    assert broker.receive(Q) == []
    clock.advance(29.9)
    assert broker.receive(Q) == []
    clock.advance(0.2)
    [again] = broker.receive(Q, visibility_timeout=30)
    assert again.message_id == first.message_id
    assert again.receive_count == 2
    assert again.first_received_at == first.first_received_at
    assert again.receipt != first.receipt
    assert broker.ack(Q, first.receipt) is False, "a lost lease cannot ack"
    assert broker.ack(Q, again.receipt) is True


def test_ack_after_lease_expiry_but_before_redelivery_still_deletes(broker: Broker, clock) -> None:
    """A slow consumer whose message nobody else has taken yet can still ack it."""
    broker.send(Q, b"x")
    [d] = broker.receive(Q, visibility_timeout=1)
    clock.advance(5)
    assert broker.ack(Q, d.receipt) is True
    assert broker.receive(Q) == []


def test_nack_with_delay_retries_later(broker: Broker, clock) -> None:
    """nack(delay=10) makes the message visible again ten seconds later, counted as delayed meanwhile."""
    broker.send(Q, b"x")
    [d] = broker.receive(Q, visibility_timeout=300)
    assert broker.nack(Q, d.receipt, delay=10) is True
    assert broker.receive(Q) == []
    [stats] = [s for s in broker.queues() if s.name == Q]
    assert (stats.visible, stats.in_flight, stats.delayed) == (0, 0, 1)
    clock.advance(10)
    [again] = broker.receive(Q)
    assert again.receive_count == 2
    assert broker.nack(Q, d.receipt) is False, "the old lease is gone"


def test_nack_without_delay_is_visible_at_once(broker: Broker) -> None:
    """nack() with no delay hands the message straight to the next receive."""
    broker.send(Q, b"x")
    [d] = broker.receive(Q)
    broker.nack(Q, d.receipt)
    [again] = broker.receive(Q)
    assert again.message_id == d.message_id


def test_dead_letter_queue_after_max_receive_count(broker: Broker, clock) -> None:
    """A message received max_receive_count times moves to the DLQ instead of a third delivery."""
    broker.configure(Q, dead_letter_queue=DLQ, max_receive_count=2)
    mid = broker.send(Q, b"poison")
    for _ in range(2):
        [d] = broker.receive(Q)
        broker.nack(Q, d.receipt)
    assert broker.receive(Q) == []
    [dead] = broker.peek(DLQ)
    assert (dead.message_id, dead.source_queue, dead.receive_count) == (mid, Q, 2)
    stats = {s.name: s for s in broker.queues()}
    assert stats[Q].dead_letter_queue == DLQ and stats[Q].max_receive_count == 2
    assert stats[DLQ].visible == 1 and stats[Q].visible == 0


def test_dead_lettering_does_not_starve_the_batch(broker: Broker) -> None:
    """Poison messages moved during a receive leave room for healthy ones in the same batch."""
    broker.configure(Q, dead_letter_queue=DLQ, max_receive_count=1)
    broker.send(Q, b"poison")
    [d] = broker.receive(Q)
    broker.nack(Q, d.receipt)
    broker.send(Q, b"ok-1")
    broker.send(Q, b"ok-2")
    got = broker.receive(Q, max_messages=2)
    assert [m.body for m in got] == [b"ok-1", b"ok-2"]
    assert [m.body for m in broker.peek(DLQ)] == [b"poison"]


def test_redrive_moves_dead_letters_back_with_counts_reset(broker: Broker) -> None:
    """redrive returns DLQ messages to their source queue, receive_count starting over."""
    broker.configure(Q, dead_letter_queue=DLQ, max_receive_count=1)
    mid = broker.send(Q, b"x")
    [d] = broker.receive(Q)
    broker.nack(Q, d.receipt)
    assert broker.receive(Q) == []
    broker.send(DLQ, b"sent straight to the dlq")
    assert broker.redrive(DLQ) == 1
    [back] = broker.receive(Q)
    assert (back.message_id, back.receive_count) == (mid, 1)
    assert [m.body for m in broker.peek(DLQ)] == [b"sent straight to the dlq"]
    assert broker.redrive(DLQ, to_queue="elsewhere") == 1
    assert [m.body for m in broker.peek("elsewhere")] == [b"sent straight to the dlq"]


def test_redrive_leaves_leased_messages(broker: Broker) -> None:
    """A DLQ message an operator's consumer holds is not pulled from under it."""
    broker.send(DLQ, b"x")
    broker.receive(DLQ)
    assert broker.redrive(DLQ, to_queue=Q) == 0


def test_purge_deletes_everything_and_counts(broker: Broker) -> None:
    """purge removes visible, delayed and leased messages and says how many."""
    broker.send(Q, b"a")
    broker.send(Q, b"b", delay=60)
    broker.send(Q, b"c")
    broker.receive(Q, max_messages=1)
    assert broker.purge(Q) == 3
    assert broker.peek(Q) == []
    assert broker.purge(Q) == 0


def test_delete_queue_removes_messages_policy_and_name(broker: Broker) -> None:
    """delete_queue drops every message, the redrive policy and the listing; a lease
    held across it can no longer be acked."""
    broker.configure(Q, dead_letter_queue=DLQ, max_receive_count=2)
    broker.send(Q, b"a")
    broker.send(Q, b"b", delay=60)
    [leased] = broker.receive(Q, max_messages=1)
    assert broker.delete_queue(Q) == 2
    assert Q not in {q.name for q in broker.queues()}
    assert broker.peek(Q) == []
    assert broker.ack(Q, leased.receipt) is False
    broker.send(Q, b"fresh")  # the name can be used again, with no policy left
    assert [q.dead_letter_queue for q in broker.queues() if q.name == Q] == [None]


def test_peek_takes_no_lease(broker: Broker) -> None:
    """peek shows messages in delivery order, marks leased ones, and does not deliver them."""
    broker.send(Q, b"a")
    broker.send(Q, b"b")
    broker.receive(Q, max_messages=1)
    peeked = broker.peek(Q, limit=5)
    assert [(m.body, m.leased) for m in peeked] == [(b"b", False), (b"a", True)]
    assert [d.body for d in broker.receive(Q)] == [b"b"]
    assert broker.peek(Q, limit=0) == []


def test_delayed_send(broker: Broker, clock) -> None:
    """A message sent with delay=5 is invisible (delayed) for five seconds."""
    broker.send(Q, b"later", delay=5)
    assert broker.receive(Q) == []
    [stats] = [s for s in broker.queues() if s.name == Q]
    assert (stats.visible, stats.in_flight, stats.delayed) == (0, 0, 1)
    assert broker.next_visible_at(Q) == clock.now + 5
    clock.advance(5)
    assert [d.body for d in broker.receive(Q)] == [b"later"]


def test_roughly_fifo(broker: Broker, clock) -> None:
    """Messages come out in the order they became visible, then in send order."""
    for i in range(25):
        broker.send(Q, str(i).encode())
    got = [d.body for d in broker.receive(Q, max_messages=10)]
    got += [d.body for d in broker.receive(Q, max_messages=10)]
    got += [d.body for d in broker.receive(Q, max_messages=10)]
    assert got == [str(i).encode() for i in range(25)]


def test_stats_count_visible_in_flight_and_delayed(broker: Broker) -> None:
    """queues() reports each queue's visible, in-flight and delayed messages."""
    broker.send(Q, b"a")
    broker.send(Q, b"b")
    broker.send(Q, b"c", delay=30)
    broker.receive(Q, max_messages=1)
    broker.send("other", b"z")
    stats = {s.name: (s.visible, s.in_flight, s.delayed) for s in broker.queues()}
    assert stats == {Q: (1, 1, 1), "other": (1, 0, 0)}
    assert [s.name for s in broker.queues()] == sorted(stats)


def test_message_id_makes_send_idempotent(broker: Broker) -> None:
    """Sending the same message_id twice to a queue enqueues it once (e.g. one cron fire)."""
    assert broker.send(Q, b"fire", message_id="cron:2026-01-01T00:00") == "cron:2026-01-01T00:00"
    broker.send(Q, b"fire again", message_id="cron:2026-01-01T00:00")
    broker.send("other", b"same id elsewhere", message_id="cron:2026-01-01T00:00")
    assert [m.body for m in broker.peek(Q)] == [b"fire"]
    assert len(broker.peek("other")) == 1


def test_send_batch_and_ack_batch(broker: Broker) -> None:
    """send_batch enqueues several messages at once; ack_batch deletes the leased ones."""
    ids = broker.send_batch(Q, [Outgoing(b"1"), Outgoing(b"2", {"k": "v"}),
                                Outgoing(b"3", delay=60)])
    assert len(set(ids)) == 3
    got = broker.receive(Q, max_messages=10)
    assert [(d.body, d.attributes) for d in got] == [(b"1", {}), (b"2", {"k": "v"})]
    assert broker.ack_batch(Q, [d.receipt for d in got] + [got[0].receipt]) == 2
    assert broker.ack_batch(Q, []) == 0
    assert broker.send_batch(Q, []) == []


def test_send_many_fans_out_to_several_queues(broker: Broker) -> None:
    """send_many enqueues to several queues at once and returns ids in entry order."""
    ids = broker.send_many([("rule-a", Outgoing(b"e", message_id="e:a")),
                            ("rule-b", Outgoing(b"e", message_id="e:b")),
                            ("rule-a", Outgoing(b"f"))])
    assert ids[:2] == ["e:a", "e:b"]
    assert [m.body for m in broker.peek("rule-a")] == [b"e", b"f"]
    assert [m.message_id for m in broker.peek("rule-b")] == ["e:b"]
    with pytest.raises(InvalidMessage):
        broker.send_many([("ok", Outgoing(b"x")), ("bad name!", Outgoing(b"y"))])
    assert broker.peek("ok") == [], "a bad entry enqueues nothing"


def test_zero_visibility_timeout_never_delivers_twice_in_one_receive(broker: Broker) -> None:
    """visibility_timeout=0 leaves messages visible, yet one receive returns each only once."""
    broker.send(Q, b"a")
    broker.send(Q, b"b")
    got = broker.receive(Q, max_messages=10, visibility_timeout=0)
    assert sorted(d.body for d in got) == [b"a", b"b"]
    assert [d.receive_count for d in broker.receive(Q, visibility_timeout=0)] == [2, 2]


def test_concurrent_receivers_never_share_a_message(broker: Broker) -> None:
    """Eight threads draining one queue see every message exactly once."""
    n = 300
    broker.send_batch(Q, [Outgoing(str(i).encode()) for i in range(n)])
    seen: list[bytes] = []
    lock = threading.Lock()

    def drain() -> None:
        while True:
            got = broker.receive(Q, max_messages=3, visibility_timeout=600)
            if not got:
                return
            with lock:
                seen.extend(d.body for d in got)
            for d in got:
                assert broker.ack(Q, d.receipt)

    threads = [threading.Thread(target=drain) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == sorted(str(i).encode() for i in range(n))


@pytest.mark.parametrize("call, code", [
    (lambda b: b.send("bad name!", b"x"), "invalid_message"),
    (lambda b: b.send("", b"x"), "invalid_message"),
    (lambda b: b.send(Q, "text"), "invalid_message"),
    (lambda b: b.send(Q, b"x", attributes={"n": 1}), "invalid_message"),
    (lambda b: b.send(Q, b"x", delay=-1), "invalid_message"),
    (lambda b: b.send(Q, b"x", message_id=""), "invalid_message"),
    (lambda b: b.receive(Q, max_messages=0), "invalid_message"),
    (lambda b: b.receive(Q, visibility_timeout=float("inf")), "invalid_message"),
    (lambda b: b.ack(Q, "not-a-receipt"), "invalid_receipt"),
    (lambda b: b.nack(Q, "12", delay=1), "invalid_receipt"),
    (lambda b: b.configure(Q, dead_letter_queue=Q, max_receive_count=3), "invalid_message"),
    (lambda b: b.configure(Q, dead_letter_queue=DLQ), "invalid_message"),
    (lambda b: b.configure(Q, dead_letter_queue=DLQ, max_receive_count=0), "invalid_message"),
], ids=["queue name with !", "empty queue name", "str body", "int attribute", "negative delay",
        "empty message id", "zero max_messages", "infinite visibility", "garbage receipt",
        "receipt without token", "own dlq", "dlq without count", "zero max_receive_count"])
def test_bad_arguments_raise_coded_errors(broker: Broker, call, code: str) -> None:
    """Bad queue names, bodies, attributes, receipts and policies raise a 400 with a stable code."""
    with pytest.raises((InvalidMessage, InvalidReceipt)) as info:
        call(broker)
    assert (info.value.code, info.value.status) == (code, 400)


def test_oversized_body_is_413(broker: Broker) -> None:
    """A body over max_body_bytes raises PayloadTooLarge and enqueues nothing."""
    broker.max_body_bytes = 10
    with pytest.raises(PayloadTooLarge):
        broker.send(Q, b"x" * 11)
    assert broker.peek(Q) == []


def test_clearing_a_redrive_policy(broker: Broker) -> None:
    """configure with neither argument removes the policy; messages are then redelivered forever."""
    broker.configure(Q, dead_letter_queue=DLQ, max_receive_count=1)
    broker.configure(Q)
    broker.send(Q, b"x")
    for count in (1, 2, 3):
        [d] = broker.receive(Q)
        assert d.receive_count == count
        broker.nack(Q, d.receipt)


def test_wait_returns_at_once_when_a_message_is_visible(broker: Broker) -> None:
    """wait is True immediately when the queue already has a visible message."""
    broker.send(Q, b"x")
    assert broker.wait(Q, timeout=0) is True


def test_wait_times_out_on_an_empty_queue(broker: Broker) -> None:
    """wait is False when nothing arrives before the timeout."""
    assert broker.wait(Q, timeout=0.01) is False
    assert broker.next_visible_at(Q) is None


def test_wait_is_woken_by_a_send_from_another_thread(broker: Broker) -> None:
    """A blocked wait returns True as soon as another thread sends (no polling needed)."""
    broker.poll_interval = 60
    started = threading.Event()

    def send_later() -> None:
        started.wait()
        broker.send(Q, b"x")

    t = threading.Thread(target=send_later)
    t.start()
    started.set()
    assert broker.wait(Q, timeout=30) is True
    t.join()


def test_wait_async_is_woken_by_a_send_from_another_thread(broker: Broker) -> None:
    """An asyncio consumer awaiting wait_async wakes when a thread sends."""
    broker.poll_interval = 60

    async def consume() -> list[bytes]:
        loop = asyncio.get_running_loop()
        waiter = asyncio.create_task(broker.wait_async(Q, timeout=30))
        await asyncio.sleep(0)
        await loop.run_in_executor(None, broker.send, Q, b"x")
        assert await waiter is True
        return [d.body for d in broker.receive(Q)]

    assert asyncio.run(consume()) == [b"x"]


def test_wait_async_times_out(broker: Broker) -> None:
    """wait_async is False when the queue stays empty."""
    assert asyncio.run(broker.wait_async(Q, timeout=0.01)) is False


def test_listeners_hear_every_queue_that_may_have_work(broker: Broker) -> None:
    """add_listener reports sends, nacks and dead-letter moves by queue name, until removed."""
    heard: list[str] = []
    remove = broker.add_listener(heard.append)
    broker.configure(Q, dead_letter_queue=DLQ, max_receive_count=1)
    broker.send(Q, b"x")
    [d] = broker.receive(Q)
    broker.nack(Q, d.receipt)
    broker.receive(Q)
    remove()
    broker.send(Q, b"y")
    assert heard == [Q, Q, DLQ]
