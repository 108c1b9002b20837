"""What every peer script reports, computed the same way as for Skiff: the gaps between
the starts of consecutive Task states of a linear workflow (the engine's own work per
durable step, the step itself answering at once), and executions per second of the
linear workflow and of a 100-item fan-out."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable


def measure(linear: Callable[[], object], fan: Callable[[], object], stamps: list[float],
            runs: int, fan_runs: int, **extra: object) -> None:
    gaps: list[float] = []
    linear()  # warm-up: imports, connections, the first schema touch
    t0 = time.perf_counter()
    for _ in range(runs):
        stamps.clear()
        linear()
        gaps += [(b - a) * 1000 for a, b in zip(stamps, stamps[1:], strict=False)]
    linear_s = time.perf_counter() - t0
    fan()
    t0 = time.perf_counter()
    for _ in range(fan_runs):
        fan()
    fan_s = time.perf_counter() - t0
    gaps.sort()
    print(json.dumps({
        "per_task_p50_ms": round(statistics.median(gaps), 3),
        "per_task_p99_ms": round(gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))], 3),
        "linear_per_s": round(runs / linear_s, 2), "linear_runs": runs,
        "map_per_s": round(fan_runs / fan_s, 3), "map_runs": fan_runs,
        "map_item_ms": round(fan_s / fan_runs / 100 * 1000, 3), **extra}))
