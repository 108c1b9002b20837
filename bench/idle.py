"""Idle cost of the event plane: the CPU the ``skiff up`` process burns with many
registered apps and no traffic, each app with async invocation, one queue
trigger and one schedule, on the checked-out code and on a base revision (by
default ``main``) in the same run; then async throughput and enqueue -> start
latency (the ``queues`` harness) on both, so that idling less does not cost
throughput.

CPU is utime + stime of the gateway process (``/proc/PID/stat``) over a fixed
window once every deploy's trial instance has been reaped, as a share of one
core. The base revision runs from a temporary ``git worktree`` of ``--base``
with its ``src`` first on ``PYTHONPATH`` (same venv, same interpreter).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench import queues
from bench.common import APPS, ROOT, Skiff, log, settle, write_app

BASE = os.environ.get("SKIFF_BENCH_BASE", "main")
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[tuple[str, Path]]:
    """A detached worktree of ``rev`` (removed after); yields (commit, path)."""
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="skiff-bench-base-") as tmp:
        path = Path(tmp) / "src"
        subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT,
                       check=True, capture_output=True)
        try:
            yield commit, path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT,
                           capture_output=True)


def _describe() -> str:
    return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()


def write_apps(root: Path, n: int) -> Path:
    for i in range(n):
        name = f"idle-{i:04d}"
        write_app(APPS / "hello", root / name, name, {
            "handler": "handler:handler",
            "scaling": {"maxInstances": 2, "idleTimeout": 1},
            "async": {"maxAttempts": 2},
            "triggers": [{"queue": f"{name}-jobs"}, {"schedule": "rate(1 day)"}]})
    return root


def idle_cpu(work: Path, apps: Path, label: str, env: dict[str, str] | None,
             seconds: float) -> dict:
    server = Skiff(work / f"home-{label}", [apps], env=env, ready_timeout=900,
                   allow_failed_deploys=True)
    try:
        deployed = len(server.apps())

        def instances() -> int:
            return sum(a.get("instances", 0) for a in server.apps())

        settle(instances, lambda v: v == 0, timeout=300, stall=30)
        time.sleep(5)  # the start-up consumers' first checks are done
        c0, t0 = _cpu_seconds(server.pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = _cpu_seconds(server.pid), time.monotonic()
        pct = 100 * (c1 - c0) / (t1 - t0)
        log(f"idle: {label}: {deployed} apps, {pct:.2f} % of a core over {t1 - t0:.0f} s")
        return {"apps": deployed, "failed_deploys": len(server.failed),
                "ready_s": round(server.ready_s, 1), "seconds": round(t1 - t0, 1),
                "cpu_s": round(c1 - c0, 3), "cpu_pct_of_core": round(pct, 2),
                "threads": len(os.listdir(f"/proc/{server.pid}/task"))}
    finally:
        server.stop()


def run(quick: bool, base: str = BASE) -> dict:
    n = 100 if quick else 1000
    seconds = 10.0 if quick else 30.0
    msgs, samples = (1000, 100) if quick else (5000, 300)
    out: dict = {"apps": n, "window_s": seconds, "base": base, "rows": []}
    with tempfile.TemporaryDirectory(prefix="skiff-bench-idle-") as tmp, \
            checkout(base) as (base_commit, base_path):
        work = Path(tmp)
        apps = write_apps(work / "apps", n)
        variants = [(f"base {base} ({base_commit})", {"PYTHONPATH": str(base_path / "src")}),
                    ("this checkout", None)]
        for i, (label, env) in enumerate(variants):
            if env is None:  # the code a server imports is the tree's when it starts
                label += f" ({_describe()})"
            log(f"idle: {label}: {n} idle apps")
            row: dict = {"code": label, "idle": idle_cpu(work, apps, f"v{i}", env, seconds)}
            log(f"idle: {label}: async throughput of {msgs}, latency of {samples}")
            q = queues.run_skiff(msgs, samples, 300, None, env=env)[0]
            row["async_throughput"] = {k: q["throughput"].get(k) for k in
                                       ("n", "e2e_rate", "e2e_s", "timed_out",
                                        "extra_deliveries", "handler_errors")}
            row["enqueue_to_start_ms"] = q["latency"]["enqueue_to_start_ms"]
            out["rows"].append(row)
    return out


def markdown(result: dict) -> str:
    lines = [f"Idle platform: {result['apps']} apps (async, one queue trigger, one schedule "
             f"each), CPU of the `skiff up` process over {result['window_s']:.0f} s; async "
             "throughput and enqueue->start latency of the queues harness.", "",
             "| code | apps | idle CPU (% of a core) | async rate (/s) | enqueue->start p50 | p99 |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lat = r["enqueue_to_start_ms"]
        lines.append(f"| {r['code']} | {r['idle']['apps']} | {r['idle']['cpu_pct_of_core']} | "
                     f"{r['async_throughput'].get('e2e_rate')} | {lat.get('p50')} ms | "
                     f"{lat.get('p99')} ms |")
    return "\n".join(lines)


def stage(quick: bool) -> dict:
    result = run(quick)
    result["markdown"] = markdown(result)
    return result
