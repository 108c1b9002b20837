"""What the Postgres broker adds over the contract: several nodes on one database."""

from __future__ import annotations

import threading
import time

from skiff.bus import Outgoing
from skiff.bus.postgres import PostgresBroker

Q = "jobs"


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_send_on_one_node_wakes_the_other(pg_database) -> None:
    """NOTIFY carries the queue name to the other broker's listeners (and waiters)."""
    a, b = PostgresBroker(pg_database), PostgresBroker(pg_database)
    try:
        heard: list[str] = []
        b.add_listener(heard.append)
        assert b.listening.wait(30)
        a.send(Q, b"x")
        _wait_for(lambda: Q in heard)
        assert heard.count(Q) == 1
    finally:
        a.close()
        b.close()


def test_two_nodes_receiving_at_once_lease_each_message_once(pg_database) -> None:
    """SKIP LOCKED claims: four consumers on two brokers share 400 messages without a
    duplicate, and every message is delivered."""
    nodes = [PostgresBroker(pg_database, listen=False) for _ in range(2)]
    nodes[0].send_batch(Q, [Outgoing(str(i).encode()) for i in range(400)])
    got: list[bytes] = []
    lock = threading.Lock()

    def consume(broker: PostgresBroker) -> None:
        while batch := broker.receive(Q, max_messages=10, visibility_timeout=300):
            with lock:
                got.extend(d.body for d in batch)
            broker.ack_batch(Q, [d.receipt for d in batch])

    threads = [threading.Thread(target=consume, args=(nodes[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert sorted(got, key=int) == [str(i).encode() for i in range(400)]
    finally:
        for n in nodes:
            n.close()


def test_release_leases_leaves_other_nodes_leases_alone(pg_database) -> None:
    """A node starting up must not steal leases another live node holds."""
    a, b = PostgresBroker(pg_database, listen=False), PostgresBroker(pg_database, listen=False)
    try:
        a.send(Q, b"x")
        [d] = a.receive(Q, visibility_timeout=300)
        assert b.release_leases() == 0
        assert b.receive(Q) == []
        assert a.ack(Q, d.receipt) is True
    finally:
        a.close()
        b.close()


def test_work_committed_while_no_listen_was_in_place_is_signalled(pg_database) -> None:
    """A NOTIFY sent while a node's listener was away (starting, or reconnecting) reaches no
    one, and the dispatcher does not poll: after LISTEN the listener signals every queue
    that holds messages."""
    a = PostgresBroker(pg_database)
    b = PostgresBroker(pg_database, listen=False)
    try:
        a.send(Q, b"sent before b listened")
        heard: list[str] = []
        b.add_listener(heard.append)
        b._listener = threading.Thread(target=b._listen, daemon=True)  # as a reconnect does
        b._listener.start()
        assert b.listening.wait(30)
        _wait_for(lambda: Q in heard)
    finally:
        a.close()
        b.close()
