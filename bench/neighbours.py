"""Neighbour impact: does a hog hurt the app next to it?

One Skiff server runs three apps: ``hello`` (the well-behaved neighbour),
``cpu-hog`` (every request spins in its handler; maxInstances 2, the default
cpu) and ``mem-hog`` (every request allocates up to its memoryMB, so most end
in an out-of-memory kill and the next one starts a new instance). ``wrk``
measures the neighbour's p50/p99 through the gateway with no attack, then
with two idle-priority busy loops outside Skiff (``chrt -i 0``: the floor,
what busy cores cost this machine however well the scheduler does), then
while client threads keep both hogs busy, and so on in turns
(quiet/floor/attack, several rounds): other work on the machine drifts over
the phases instead of landing on one. The figures are ratios of the medians
over the phases, to the quiet phases.

The Skiff server is NOT pinned to a core here, unlike the warm stage: the
question is how the platform shares the whole machine between a hog's
instances, its neighbour and its own gateway. ``wrk`` stays on the client core.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import (
    APPS,
    Client,
    Skiff,
    children,
    http_get,
    log,
    wait_http,
    wait_until,
    write_app,
)
from bench.warm import wrk

CONNECTIONS = 4  # a light, latency-bound load: the neighbour is not saturated
CPU_HOG_CLIENTS = 4  # > maxInstances 2: both hog instances spin all the time
MEM_HOG_CLIENTS = 2
MEM_HOG_MB = 128


class _Attack:
    """Client threads that keep the hogs busy until stopped; counts their outcomes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.running = threading.Event()
        self.stopped = threading.Event()
        self.outcomes: dict[str, int] = {}
        self.inflight = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(path,), daemon=True)
                        for path in ["/cpu-hog/?seconds=1"] * CPU_HOG_CLIENTS
                        + ["/mem-hog/"] * MEM_HOG_CLIENTS]
        for t in self.threads:
            t.start()

    def _loop(self, path: str) -> None:
        client = Client(self.port, timeout=120)
        while not self.stopped.is_set():
            if not self.running.wait(0.2):
                continue
            with self.lock:
                self.inflight += 1
            try:
                status, _, _ = client.request("GET", path)
                outcome = f"{path.split('/')[1]} {status}"
            except OSError as exc:
                client.close()
                outcome = f"{path.split('/')[1]} {type(exc).__name__}"
            with self.lock:
                self.inflight -= 1
                self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        client.close()

    def quiesce(self) -> None:
        """Stop sending and wait until no hog request is in flight."""
        self.running.clear()
        wait_until(lambda: self.inflight == 0, 120, 0.05, "the hogs' last requests")

    def take(self) -> dict[str, int]:
        with self.lock:
            out, self.outcomes = self.outcomes, {}
        return out

    def close(self) -> None:
        self.running.clear()
        self.stopped.set()
        for t in self.threads:
            t.join(130)


def _start(work: Path) -> Skiff:
    apps = work / "apps"
    write_app(APPS / "hello", apps / "hello", "hello",
              {"handler": "handler:handler", "scaling": {"maxInstances": 4,
                                                         "idleTimeout": "10m"}})
    write_app(APPS / "cpu_hog", apps / "cpu-hog", "cpu-hog",
              {"handler": "handler:handler", "resources": {"timeout": 30},
               "scaling": {"maxInstances": 2, "idleTimeout": "10m"}})
    write_app(APPS / "mem_hog", apps / "mem-hog", "mem-hog",
              {"handler": "handler:handler", "resources": {"memoryMB": MEM_HOG_MB,
                                                           "timeout": 30},
               "scaling": {"maxInstances": 2, "idleTimeout": "10m"}})
    return Skiff(work / "home", [apps], pin=False)


def _spinners() -> list[subprocess.Popen]:
    """Two busy loops at SCHED_IDLE: they take only CPU time nobody else wants."""
    spin = ["chrt", "-i", "0", sys.executable, "-c", "while True: pass"]
    return [children.start(spin) for _ in range(2)]


def run(quick: bool) -> dict:
    seconds = 3 if quick else 8
    rounds = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="skiff-bench-neighbours-") as tmp:
        skiff = _start(Path(tmp))
        attack = None
        try:
            path = "/hello/?name=bench"
            wait_http(skiff.port, path)
            status, _, body = http_get(skiff.port, path)
            if status != 200 or b"hello, bench" not in body:
                raise RuntimeError(f"GET {path} -> {status} {body[:200]!r}")
            wrk(skiff.port, path, CONNECTIONS, 2)  # warm the neighbour's instances
            attack = _Attack(skiff.port)
            phases: list[dict] = []
            for r in range(rounds):
                for name in ("quiet", "floor", "attack"):
                    spinning = _spinners() if name == "floor" else []
                    if name == "attack":
                        attack.running.set()
                        time.sleep(2)  # both hogs at full tilt before measuring
                    row = wrk(skiff.port, path, CONNECTIONS, seconds)
                    attack.quiesce()
                    for proc in spinning:
                        children.stop(proc, grace=1)
                    row.update(phase=name, round=r + 1, hogs=attack.take())
                    log(f"neighbours: round {r + 1} {name:<6} {row['rps']:>8.0f} req/s  "
                        f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  "
                        f"errors {row['errors']}  hogs {row['hogs']}")
                    phases.append(row)
                    time.sleep(1)  # OOM kills and replacement instances settle
        finally:
            if attack is not None:
                attack.close()
            skiff.stop()

    def median(phase: str, key: str) -> float:
        return statistics.median(p[key] for p in phases if p["phase"] == phase)

    quiet = {k: median("quiet", k) for k in ("p50_ms", "p99_ms", "rps")}
    floor = {k: median("floor", k) for k in ("p50_ms", "p99_ms", "rps")}
    loud = {k: median("attack", k) for k in ("p50_ms", "p99_ms", "rps")}
    return {
        "seconds": seconds, "rounds": rounds, "connections": CONNECTIONS,
        "attack": f"{CPU_HOG_CLIENTS} clients on cpu-hog (1 s spins, maxInstances 2, default "
                  f"cpu), {MEM_HOG_CLIENTS} on mem-hog (allocates up to memoryMB "
                  f"{MEM_HOG_MB})",
        "phases": phases, "quiet": quiet, "floor": floor, "attack_medians": loud,
        "floor_p50_ratio": round(floor["p50_ms"] / quiet["p50_ms"], 2),
        "floor_p99_ratio": round(floor["p99_ms"] / quiet["p99_ms"], 2),
        "p50_ratio": round(loud["p50_ms"] / quiet["p50_ms"], 2),
        "p99_ratio": round(loud["p99_ms"] / quiet["p99_ms"], 2),
        "rps_ratio": round(loud["rps"] / quiet["rps"], 2),
    }
