"""Prefect running locally (its ephemeral API server on SQLite): a flow of 5 tasks and
a flow mapping a task over 100 items (task.map, the default thread pool runner)."""

from __future__ import annotations

import logging
import sys
import time

from common import measure
from prefect import flow, task

stamps: list[float] = []
ITEMS = 100


@task
def step(i: int) -> int:
    stamps.append(time.perf_counter())
    return i


@flow
def linear() -> list[int]:
    return [step(i) for i in range(5)]


@flow
def fan() -> list[int]:
    return [f.result() for f in step.map(range(ITEMS))]


if __name__ == "__main__":
    logging.disable(logging.WARNING)  # one line per task run otherwise
    measure(linear, fan, stamps, int(sys.argv[1]), int(sys.argv[2]),
            map_shape="task.map over 100 items")
