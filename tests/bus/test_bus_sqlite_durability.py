"""What only the SQLite broker promises: accepted messages and leases outlive
the process, even one killed with SIGKILL, and processes sharing the file
never lease the same message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from skiff.bus import Outgoing, SQLiteBroker

Q = "jobs"


def test_messages_and_leases_survive_reopening(tmp_path: Path, clock) -> None:
    """Closing and reopening the file keeps queued messages, leases and redrive policies."""
    path = tmp_path / "bus.db"
    with SQLiteBroker(path, clock=clock) as b:
        b.configure(Q, dead_letter_queue="dead", max_receive_count=5)
        b.send_batch(Q, [Outgoing(f"m{i}".encode(), {"i": str(i)}) for i in range(5)])
        [leased] = b.receive(Q, max_messages=1, visibility_timeout=60)
    with SQLiteBroker(path, clock=clock) as b:
        rest = b.receive(Q)
        assert [d.body for d in rest] == [b"m1", b"m2", b"m3", b"m4"]
        assert [d.attributes for d in rest][0] == {"i": "1"}
        b.ack_batch(Q, [d.receipt for d in rest])
        clock.advance(61)
        [again] = b.receive(Q)
        assert (again.message_id, again.receive_count) == (leased.message_id, 2)
        stats = {s.name: s for s in b.queues()}
        assert stats[Q].dead_letter_queue == "dead"


def test_sent_messages_survive_kill_9(tmp_path: Path) -> None:
    """A child that sends N messages and is then SIGKILLed has lost none of them."""
    path = tmp_path / "bus.db"
    n = 200
    child = textwrap.dedent(f"""
        import sys, time
        from skiff.bus import SQLiteBroker
        b = SQLiteBroker({str(path)!r})
        for i in range({n}):
            b.send({Q!r}, str(i).encode())
        print("sent", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "sent"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    with SQLiteBroker(path) as b:
        got = []
        while batch := b.receive(Q, max_messages=50, visibility_timeout=600):
            got.extend(d.body for d in batch)
    assert sorted(got, key=int) == [str(i).encode() for i in range(n)]


def test_two_brokers_on_one_file_never_share_a_message(tmp_path: Path) -> None:
    """Separate connections (as separate processes would hold) lease disjoint messages."""
    path = tmp_path / "bus.db"
    brokers = [SQLiteBroker(path) for _ in range(4)]
    n = 200
    brokers[0].send_batch(Q, [Outgoing(str(i).encode()) for i in range(n)])
    seen: list[list[bytes]] = [[] for _ in brokers]

    def drain(i: int) -> None:
        b = brokers[i]
        while got := b.receive(Q, max_messages=4, visibility_timeout=600):
            seen[i].extend(d.body for d in got)
            b.ack_batch(Q, [d.receipt for d in got])

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(brokers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for b in brokers:
        b.close()
    everything = [m for part in seen for m in part]
    assert sorted(everything, key=int) == [str(i).encode() for i in range(n)]


def test_non_durable_mode_still_persists_across_reopen(tmp_path: Path) -> None:
    """durable=False trades power-loss safety for speed, not process-crash safety."""
    path = tmp_path / "bus.db"
    with SQLiteBroker(path, durable=False) as b:
        b.send(Q, b"x")
    with SQLiteBroker(path) as b:
        assert [d.body for d in b.receive(Q)] == [b"x"]


def test_release_leases_wakes_every_queue_it_released(tmp_path: Path, clock) -> None:
    """At the start of the next life, releasing the dead leases wakes the consumers of each
    queue that held one, also a queue this process has not named yet (an app's async queue
    is never configured): its consumer would otherwise sleep until the old lease's end."""
    path = tmp_path / "bus.db"
    with SQLiteBroker(path, clock=clock) as b:
        b.send("skiff:async:app", b"x")
        b.receive("skiff:async:app", visibility_timeout=300)
    with SQLiteBroker(path, clock=clock) as b:
        woken: list[str] = []
        b.add_listener(woken.append)
        assert b.release_leases() == 1
        assert woken == ["skiff:async:app"]
