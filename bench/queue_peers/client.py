"""Measure one peer (``celery`` or ``dramatiq``) whose workers already run:
warm up, one throughput run, one latency run; write the results as JSON.

    python client.py dramatiq --n 10000 --samples 1000 --out result.json

The broker is in ``BENCH_REDIS_URL``. Tasks count themselves with ``INCR
done`` and record their start time in the hash ``start`` (see *_tasks.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import load
import redis


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("system", choices=["celery", "dramatiq"])
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--samples", type=int, required=True)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--warm", type=int, default=50)
    ap.add_argument("--gap-ms", type=float, nargs=2, default=(10.0, 40.0))
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    if args.system == "celery":
        from celery_tasks import noop

        def enqueue(i: int | None = None) -> None:
            noop.delay() if i is None else noop.delay(i)
    else:
        from dramatiq_tasks import noop

        def enqueue(i: int | None = None) -> None:
            noop.send() if i is None else noop.send(i)

    r = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])

    def done() -> int:
        return int(r.get("done") or 0)

    def make_sender() -> load.Send:
        return lambda _k: enqueue()

    out: dict = {"system": args.system}
    # warm-up: workers up, connections open, code paths hot
    r.delete("done", "start")
    warm = load.throughput(make_sender, done, args.warm, args.threads, min(args.timeout, 120))
    if warm["timed_out"]:
        out["error"] = f"warm-up did not finish: {warm}"
        _write(args.out, out)
        return 1
    r.set("done", 0)
    roots = [int(x) for x in os.environ.get("BENCH_CPU_ROOTS", "").split(",") if x]
    core = int(os.environ["BENCH_CORE"]) if os.environ.get("BENCH_CORE") else None
    out["throughput"] = load.throughput(make_sender, done, args.n, args.threads, args.timeout,
                                        cpu_roots=roots, core=core)
    out["throughput"]["extra_deliveries"] = done() - args.n

    r.delete("start")
    time.sleep(0.5)  # workers idle again, as for a single message
    sends = load.single(enqueue, args.samples, tuple(args.gap_ms), timeout=args.timeout)
    deadline = time.monotonic() + 30
    while r.hlen("start") < len(sends) and time.monotonic() < deadline:
        time.sleep(0.05)
    starts = {int(k): float(v) for k, v in r.hgetall("start").items()}
    out["latency"] = load.latency(sends, starts)
    _write(args.out, out)
    return 0


def _write(path: str, data: dict) -> None:
    with open(path, "w") as f:
        json.dump(data, f)


if __name__ == "__main__":
    sys.exit(main())
