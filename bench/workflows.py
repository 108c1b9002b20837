"""``python -m bench --only workflows``: Skiff's durable workflow executor against DBOS
Transact on SQLite and Prefect running locally, in the same run.

Each engine runs, in process, with steps that answer at once, so what is timed is the
engine's own work per durable step:

- **per-Task overhead**: a 5-Task linear workflow; the gaps between the starts of
  consecutive Task states (p50, p99), over many executions; and its executions/s;
- **100-item Map**: executions/s of a workflow fanning out over 100 items (Skiff: a
  Map state, every item a Task; DBOS: 100 steps, in sequence, as it has no Map;
  Prefect: ``task.map`` over 100 items) and the wall time per item.

Skiff: the executor over workflows.db (fsync'd SQLite, as it runs by default) and a
scripted invoke, as bench/sfn_overhead.py. DBOS: its SQLite system database (fsync'd by
SQLite's defaults). Prefect: its ephemeral local API server on SQLite. The peers live in
``bench/.peers/workflows`` (uv).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from bench import peers
from bench.common import BENCH, log

PEER_CODE = BENCH / "workflow_peers"
APP = SimpleNamespace(name="w", kind="lambda", pool=object(), manifest=SimpleNamespace(
    spec=SimpleNamespace(resources=SimpleNamespace(timeout=30.0))))


async def _skiff(runs: int, map_runs: int) -> dict:
    from skiff import ipc as p
    from skiff.platform.workflows import StepFunctions
    from skiff.store.workflow_history import SQLiteWorkflowHistory

    stamps: list[float] = []

    async def invoke(inv) -> p.Response:  # noqa: ANN001
        stamps.append(time.perf_counter())
        return p.Response(id=inv.request.id, body=b"{}")

    async def run(machine: str, value: object) -> None:
        row = await sfn.start_execution(machine, value)
        live = sfn._live.get(row.arn)  # gone already when it finished in the start
        if live is not None:
            await live.done.wait()

    with tempfile.TemporaryDirectory() as d:
        sfn = StepFunctions(SQLiteWorkflowHistory(Path(d) / "w.db", exclusive=True),
                            SimpleNamespace(apps={"w": APP}), invoke)
        task = {"Type": "Task", "Resource": "skiff:app/w"}
        sfn.save("linear", {"StartAt": "T0", "States": {
            f"T{i}": {**task, **({"Next": f"T{i + 1}"} if i < 4 else {"End": True})}
            for i in range(5)}})
        sfn.save("fan", {"StartAt": "M", "States": {"M": {
            "Type": "Map", "ItemsPath": "$.items", "End": True,
            "ItemProcessor": {"StartAt": "T", "States": {"T": {**task, "End": True}}}}}})
        await run("linear", {})  # warm-up
        gaps: list[float] = []
        t0 = time.perf_counter()
        for _ in range(runs):
            stamps.clear()
            await run("linear", {})
            gaps += [(b - a) * 1000 for a, b in zip(stamps, stamps[1:], strict=False)]
        linear_s = time.perf_counter() - t0
        items = {"items": list(range(100))}
        await run("fan", items)
        t0 = time.perf_counter()
        for _ in range(map_runs):
            await run("fan", items)
        map_s = time.perf_counter() - t0
        await sfn.stop()
    gaps.sort()
    return {"per_task_p50_ms": round(statistics.median(gaps), 3),
            "per_task_p99_ms": round(gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))], 3),
            "linear_per_s": round(runs / linear_s, 2), "linear_runs": runs,
            "map_per_s": round(map_runs / map_s, 3), "map_runs": map_runs,
            "map_item_ms": round(map_s / map_runs / 100 * 1000, 3),
            "map_shape": "a Map state, 100 Task items"}


def _peer(script: str, runs: int, map_runs: int) -> dict:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PREFECT_HOME": home,
               # a busy machine starts the ephemeral server slowly
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
        proc = subprocess.run([peers.python("workflows"), str(PEER_CODE / script), str(runs),
                               str(map_runs)], capture_output=True, text=True, env=env,
                              cwd=PEER_CODE, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{script} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def run(quick: bool) -> dict:
    runs, map_runs = (20, 2) if quick else (200, 10)
    rows = []
    log(f"workflows: Skiff ({runs} linear, {map_runs} Map executions)")
    rows.append({"engine": "Skiff (fsync'd SQLite)", **asyncio.run(_skiff(runs, map_runs))})
    log("workflows: DBOS Transact on SQLite")
    rows.append({"engine": "DBOS Transact (SQLite)", **_peer("dbos_bench.py", runs, map_runs)})
    # Prefect takes tens of ms per task: fewer runs give as many samples per second
    p_runs, p_map = max(5, runs // 10), max(1, map_runs // 5)
    log("workflows: Prefect (local ephemeral server)")
    rows.append({"engine": "Prefect (local, SQLite)", **_peer("prefect_bench.py", p_runs, p_map)})
    return {"rows": rows}


def markdown(result: dict, command: str) -> str:
    rows = result["rows"]
    skiff = rows[0]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}×" if a and b else "–"

    out = [f"`{command}` — steps answer at once, so the figures are each engine's own work "
           "per durable step. Ratios: Skiff / that row (below 1 is better for the per-Task "
           "overhead, above 1 for executions/s).", "",
           "| engine | per-Task overhead p50 ms | p99 ms | 5-Task linear executions/s | "
           "100-item Map executions/s | ms per Map item | Map shape | p50 ratio | "
           "linear ratio | Map ratio |", "|" + "---|" * 10]
    for r in rows:
        cells = [r["engine"], f"{r['per_task_p50_ms']:.3f}", f"{r['per_task_p99_ms']:.3f}",
                 f"{r['linear_per_s']:,.2f}", f"{r['map_per_s']:,.3f}",
                 f"{r['map_item_ms']:.3f}", r["map_shape"]]
        if r is skiff:
            cells += ["", "", ""]
        else:
            cells += [ratio(skiff["per_task_p50_ms"], r["per_task_p50_ms"]),
                      ratio(skiff["linear_per_s"], r["linear_per_s"]),
                      ratio(skiff["map_per_s"], r["map_per_s"])]
        out.append("| " + " | ".join(cells) + " |")
    dbos = rows[1]
    met = "met" if skiff["per_task_p50_ms"] <= 1 else "missed"
    out += ["", f"Goals: ≤ 1 ms per durable Task state at p50 (Skiff "
                f"{skiff['per_task_p50_ms']:.2f} ms: {met}); "
                f"≥ 3× DBOS's throughput (5-Task linear: "
                f"{ratio(skiff['linear_per_s'], dbos['linear_per_s'])}, 100-item Map: "
                f"{ratio(skiff['map_per_s'], dbos['map_per_s'])})."]
    return "\n".join(out) + "\n"


def stage(quick: bool) -> dict:
    """The ``workflows`` stage of ``python -m bench``."""
    result = run(quick)
    result["markdown"] = markdown(result, "python -m bench --only workflows"
                                  + (" --quick" if quick else ""))
    return result
