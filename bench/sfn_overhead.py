"""Per-Task-state overhead of the durable executor, in process: a linear workflow of
Task states over a scripted invoke that answers at once, so what is timed is the
executor's own work (the interpreter's step, the fsync'd append to workflows.db, the
commands), not an app's. Run: .venv/bin/python bench/sfn_overhead.py [tasks]"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from skiff import ipc as p
from skiff.platform.workflows import StepFunctions
from skiff.store.workflow_history import SQLiteWorkflowHistory

APP = SimpleNamespace(name="w", kind="lambda", pool=object(), manifest=SimpleNamespace(
    spec=SimpleNamespace(resources=SimpleNamespace(timeout=30.0))))


async def main(n_tasks: int, runs: int) -> None:
    stamps: list[float] = []

    async def invoke(inv) -> p.Response:  # noqa: ANN001
        stamps.append(time.perf_counter())
        return p.Response(id=inv.request.id, body=b"{}")

    with tempfile.TemporaryDirectory() as d:
        sfn = StepFunctions(SQLiteWorkflowHistory(Path(d) / "w.db", exclusive=True),
                            SimpleNamespace(apps={"w": APP}), invoke)
        states = {f"T{i}": {"Type": "Task", "Resource": "skiff:app/w",
                            **({"Next": f"T{i + 1}"} if i < n_tasks - 1 else {"End": True})}
                  for i in range(n_tasks)}
        sfn.save("lin", json.dumps({"StartAt": "T0", "States": states}))
        gaps: list[float] = []
        t0 = time.perf_counter()
        for _ in range(runs):
            stamps.clear()
            row = await sfn.start_execution("lin", {})
            live = sfn._live.get(row.arn)  # gone already when it finished in the start
            if live is not None:
                await live.done.wait()
            gaps += [(b - a) * 1000 for a, b in zip(stamps, stamps[1:], strict=False)]
        elapsed = time.perf_counter() - t0
        gaps.sort()
        print(f"{n_tasks}-Task linear, {runs} executions, durable (fsync'd SQLite): "
              f"per-Task overhead p50 {statistics.median(gaps):.3f} ms, "
              f"p99 {gaps[int(len(gaps) * 0.99)]:.3f} ms; {runs / elapsed:.1f} executions/s")
        await sfn.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5, 200))
