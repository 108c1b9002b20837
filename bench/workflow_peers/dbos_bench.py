"""DBOS Transact on SQLite: a 5-step linear workflow and a 100-step workflow (DBOS has
no Map state: its steps run one after another, each checkpointed)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from common import measure
from dbos import DBOS, DBOSConfig

stamps: list[float] = []
ITEMS = 100


@DBOS.step()
def step(i: int) -> int:
    stamps.append(time.perf_counter())
    return i


@DBOS.workflow()
def linear() -> list[int]:
    return [step(i) for i in range(5)]


@DBOS.workflow()
def fan() -> list[int]:
    return [step(i) for i in range(ITEMS)]


if __name__ == "__main__":
    runs, fan_runs = int(sys.argv[1]), int(sys.argv[2])
    with tempfile.TemporaryDirectory() as d:
        config: DBOSConfig = {"name": "skiff-bench",
                              "system_database_url": f"sqlite:///{Path(d) / 'dbos.sqlite'}"}
        DBOS(config=config)
        DBOS.launch()
        try:
            measure(linear, fan, stamps, runs, fan_runs, map_shape="100 steps in sequence")
        finally:
            DBOS.destroy()
