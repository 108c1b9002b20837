"""The load both sides use: Skiff's harness and the peers' client send, wait
and time messages with this same code, so only the ``send`` differs.

Standard library only: it runs in Skiff's environment and in the peers'.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Callable

Send = Callable[[int], None]


def flood(make_sender: Callable[[], Send], n: int, threads: int, timeout: float) -> dict:
    """Send ``n`` messages as fast as ``threads`` concurrent senders go (each
    made by ``make_sender`` in its own thread: its own connection). Returns
    when the last send returned: wall times ``t0`` (first send may start) and
    ``t_accepted``, and the number of failed sends."""
    lock = threading.Lock()
    next_k = [0]
    errors: list[str] = []
    ready = threading.Barrier(threads + 1)
    deadline = time.monotonic() + timeout

    def take() -> int | None:
        with lock:
            k = next_k[0]
            if k >= n:
                return None
            next_k[0] = k + 1
            return k

    def worker() -> None:
        try:
            send = make_sender()
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(repr(exc))
            send = None
        ready.wait()
        while send is not None and time.monotonic() < deadline:
            k = take()
            if k is None:
                return
            try:
                send(k)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(repr(exc))

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    ready.wait()
    t0 = time.time()
    for t in pool:
        t.join(max(0.0, deadline - time.monotonic()) + 1.0)
    t_accepted = time.time()
    return {"t0": t0, "t_accepted": t_accepted, "sent": min(next_k[0], n),
            "errors": len(errors), "first_errors": errors[:3],
            "timed_out": any(t.is_alive() for t in pool)}


def wait_count(read: Callable[[], int], target: int, t0: float, timeout: float) -> dict:
    """Poll ``read()`` until it reaches ``target``. The poll interval grows
    with the elapsed time (0.5% of it, 5 to 50 ms), so the observed end is
    late by at most ~0.5% of the run and the polls cost the server little."""
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        value = read()
        polls += 1
        now = time.time()
        if value >= target:
            return {"t_done": now, "count": value, "polls": polls, "timed_out": False}
        if time.monotonic() > deadline:
            return {"t_done": now, "count": value, "polls": polls, "timed_out": True}
        time.sleep(min(0.05, max(0.005, (now - t0) * 0.005)))


def throughput(make_sender: Callable[[], Send], read: Callable[[], int], n: int,
               threads: int, timeout: float, cpu_roots: list[int] | None = None,
               core: int | None = None) -> dict:
    """Flood ``n`` messages, then wait until ``read()`` counts them all.

    ``cpu_roots``: the processes of the system under test (each with its
    descendants), whose CPU time per message is reported; ``core``: the core
    they run on, whose busy share is reported."""
    cpu0, core0 = cpu_seconds(cpu_roots or []), core_jiffies(core)
    sent = flood(make_sender, n, threads, timeout)
    done = wait_count(read, n, sent["t0"], timeout)
    cpu1, core1 = cpu_seconds(cpu_roots or []), core_jiffies(core)
    accept_s = sent["t_accepted"] - sent["t0"]
    e2e_s = done["t_done"] - sent["t0"]
    cpu: dict = {}
    if cpu_roots:
        per = 1000 / max(1, done["count"])
        diffs = [tuple(b - a for a, b in zip(before, after, strict=True))
                 for before, after in zip(cpu0, cpu1, strict=True)]
        cpu["cpu_ms_per_msg"] = round(sum(d[2] for d in diffs) * per, 3)
        cpu["cpu_ms_per_msg_by_root"] = [{"pid": pid, "own": round(o * per, 3),
                                          "own_system": round(s * per, 3),
                                          "tree": round(t * per, 3)}
                                         for pid, (o, s, t) in zip(cpu_roots, diffs, strict=True)]
    if core0 and core1 and core1[0] > core0[0]:
        cpu["core_busy"] = round(1 - (core1[1] - core0[1]) / (core1[0] - core0[0]), 3)
    return {**cpu, "n": n, "threads": threads, "accept_s": round(accept_s, 4),
            "e2e_s": round(e2e_s, 4),
            "accept_rate": round(sent["sent"] / accept_s, 1) if accept_s > 0 else None,
            "e2e_rate": round(done["count"] / e2e_s, 1) if e2e_s > 0 else None,
            "processed": done["count"], "send_errors": sent["errors"],
            "first_errors": sent["first_errors"],
            "timed_out": sent["timed_out"] or done["timed_out"]}


def proc_tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    seen, todo = [], [pid]
    while todo and len(seen) < 10_000:
        p = todo.pop()
        seen.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    return seen


def cpu_seconds(roots: list[int]) -> list[tuple[float, float, float]]:
    """For each root: (its own CPU time, its own system time, the CPU time of
    its whole tree); CPU time is user + system."""
    hz = os.sysconf("SC_CLK_TCK")
    out = []
    for root in roots:
        own = own_sys = tree = 0
        for p in proc_tree(root):
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                user, system = int(fields[11]), int(fields[12])
            except (OSError, IndexError, ValueError):
                continue
            tree += user + system
            if p == root:
                own, own_sys = user + system, system
        out.append((own / hz, own_sys / hz, tree / hz))
    return out


def core_jiffies(core: int | None) -> tuple[int, int] | None:
    """(total, idle) jiffies of one core since boot."""
    if core is None:
        return None
    with open("/proc/stat") as f:
        for line in f:
            name, *vals = line.split()
            if name == f"cpu{core}":
                v = [int(x) for x in vals]
                return sum(v), v[3] + (v[4] if len(v) > 4 else 0)
    return None


def single(send: Send, samples: int, gap_ms: tuple[float, float], seed: int = 1,
           timeout: float = 600.0) -> list[tuple[int, float, float]]:
    """Send ``samples`` messages one at a time, a random gap (uniform in
    ``gap_ms``, the same sequence for every system) after each send returned.
    Returns ``(i, sent_at, accepted_at)`` wall times."""
    rng = random.Random(seed)
    out = []
    deadline = time.monotonic() + timeout
    for i in range(samples):
        if time.monotonic() > deadline:
            break
        t_send = time.time()
        send(i)
        out.append((i, t_send, time.time()))
        time.sleep(rng.uniform(*gap_ms) / 1000)
    return out


def latency(sends: list[tuple[int, float, float]], starts: dict[int, float]) -> dict:
    """Enqueue→start (ms) of each sample from its send time to the time its
    handler started; also how long the enqueue call itself took, and how many
    samples started only after the next one was sent (the gap was too short)."""
    e2s, call, missing, overlapped = [], [], 0, 0
    for idx, (i, t_send, t_acc) in enumerate(sends):
        call.append((t_acc - t_send) * 1000)
        if i not in starts:
            missing += 1
            continue
        e2s.append((starts[i] - t_send) * 1000)
        if idx + 1 < len(sends) and starts[i] > sends[idx + 1][1]:
            overlapped += 1
    return {"samples": len(sends), "missing": missing, "overlapped": overlapped,
            "enqueue_to_start_ms": summarize(e2s), "enqueue_call_ms": summarize(call)}


def summarize(values: list[float]) -> dict:
    """Nearest-rank percentiles, as bench.common does."""
    if not values:
        return {"n": 0}
    v = sorted(values)

    def pct(q: float) -> float:
        return round(v[max(0, math.ceil(q / 100 * len(v)) - 1)], 3)

    return {"n": len(v), "p50": pct(50), "p90": pct(90), "p99": pct(99),
            "mean": round(sum(v) / len(v), 3), "min": round(v[0], 3), "max": round(v[-1], 3)}
