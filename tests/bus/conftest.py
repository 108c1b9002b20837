"""Fixtures of the bus tests: a hand-moved clock and every broker backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.bus import Broker, MemoryBroker, SQLiteBroker
from tests.postgres import pg_database  # noqa: F401 - a fixture


class FakeClock:
    """Seconds since the epoch that move only when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def broker(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Broker]:
    if request.param == "memory":
        b: Broker = MemoryBroker(clock=clock)
    elif request.param == "postgres":
        from skiff.bus.postgres import PostgresBroker

        b = PostgresBroker(request.getfixturevalue("pg_database"), clock=clock)
        # Each LISTEN (the first included) signals every queue holding messages,
        # a wake-up that may be spurious; wait for it so tests count only theirs.
        assert b.listening.wait(10), "the broker's LISTEN never came up"
    else:
        # durable=False: the same semantics without an fsync per commit (speed);
        # test_bus_sqlite_durability.py covers the durable default.
        b = SQLiteBroker(tmp_path / "bus.db", clock=clock, durable=False)
    yield b
    b.close()
