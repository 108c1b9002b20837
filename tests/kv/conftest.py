"""Fixtures of the KV tests: a hand-moved clock and every KV backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.store.kv import KV, MemoryKV
from skiff.store.kv_sqlite import SQLiteKV
from tests.postgres import pg_database  # noqa: F401 - a fixture


class KVClock:
    """Seconds since the epoch that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def kv_clock() -> KVClock:
    return KVClock()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def kv(request: pytest.FixtureRequest, tmp_path: Path, kv_clock: KVClock) -> Iterator[KV]:
    store: KV
    if request.param == "postgres":
        from skiff.store.kv_postgres import PostgresKV

        store = PostgresKV(request.getfixturevalue("pg_database"), clock=kv_clock)
    elif request.param == "memory":
        store = MemoryKV(clock=kv_clock)
    else:
        store = SQLiteKV(tmp_path / "kv.db", clock=kv_clock, durable=False)
    yield store
    store.close()
