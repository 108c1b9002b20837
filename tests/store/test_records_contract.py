"""The one contract every InvocationLog backend keeps (the SQLite Store and
PostgresInvocationLog via the ``records`` fixture, whose retention is 1 day,
100 lines and 10,000 bytes per app)."""

from __future__ import annotations

import time

from skiff.store.records import Invocation, InvocationLog


def _inv(app: str, n: int, *, cold: bool = False, status: int = 200,
         duration_ms: float = 10.0) -> Invocation:
    return Invocation(f"req-{n}", app, "r1", "i1", "http", cold, 5.0 if cold else 0.0,
                      duration_ms, 2.0 if cold else 0.0, 128, status,
                      None if status < 500 else "boom", 1_700_000_000.0 + n)


def _lines(records: InvocationLog, app: str) -> list[str]:
    return [r["line"] for r in records.logs(app, limit=10_000)]


def test_records_come_back_newest_first(records: InvocationLog) -> None:
    """Each record is read back whole, newest first, only the app's own."""
    for n in range(3):
        records.record(_inv("a", n, cold=n == 0))
    records.record(_inv("b", 9))
    rows = records.invocations("a")
    assert [r["id"] for r in rows] == ["req-2", "req-1", "req-0"]
    first = rows[-1]
    assert (first["cold"], first["init_ms"], first["billed_ms"], first["memory_mb"],
            first["status"], first["error"], first["ts"]) == (
        True, 5.0, 10, 128, 200, None, 1_700_000_000.0)
    assert isinstance(first["seq"], int)
    assert [r["id"] for r in records.invocations("a", limit=1)] == ["req-2"]


def test_stats_count_and_rank(records: InvocationLog) -> None:
    """Counts cover everything; percentiles are nearest-rank over the durations."""
    for n in range(1, 101):
        records.record(_inv("a", n, cold=n <= 2, status=500 if n == 50 else 200,
                            duration_ms=float(n)))
    s = records.stats("a")
    assert (s["requests"], s["cold_starts"], s["errors"]) == (100, 2, 1)
    assert s["billed_ms"] == sum(range(1, 101))
    assert (s["p50_ms"], s["p95_ms"], s["p99_ms"]) == (50.0, 95.0, 99.0)
    assert s["avg_init_ms"] == 5.0 and s["cold_start_added_p95_ms"] == 2.0
    empty = records.stats("nobody")
    assert empty["requests"] == 0 and empty["p50_ms"] is None


def test_logs_page_by_seq_and_filter_by_stream(records: InvocationLog) -> None:
    """Lines come oldest first; after=<seq> pages; stream= filters."""
    for i in range(5):
        records.log("a", "r1", "i1", f"req-{i}", "stderr" if i % 2 else "stdout", f"line {i}")
    records.log("b", "r1", "i1", "", "stdout", "other app")
    rows = records.logs("a")
    assert [r["line"] for r in rows] == [f"line {i}" for i in range(5)]
    assert (rows[0]["request_id"], rows[0]["stream"], rows[0]["instance"]) == (
        "req-0", "stdout", "i1")
    assert [r["line"] for r in records.logs("a", after=rows[2]["seq"])] == ["line 3", "line 4"]
    assert [r["line"] for r in records.logs("a", limit=2)] == ["line 0", "line 1"]
    assert [r["line"] for r in records.logs("a", stream="stderr")] == ["line 1", "line 3"]


def test_records_keep_their_trace_id(records: InvocationLog) -> None:
    """The trace an invocation ran under comes back with its record ("" when none)."""
    import dataclasses

    records.record(dataclasses.replace(_inv("a", 1), trace_id="ab" * 16))
    records.record(_inv("a", 2))
    assert [r["trace_id"] for r in records.invocations("a")] == ["", "ab" * 16]


def test_logs_newest_since_and_by_request(records: InvocationLog) -> None:
    """newest= gives the last lines (still oldest first); since= and request_id= filter."""
    for i in range(6):
        records.log("a", "r1", "i1", f"req-{i % 2}", "stdout", f"line {i}")
    rows = records.logs("a")
    assert [r["line"] for r in records.logs("a", limit=2, newest=True)] == ["line 4", "line 5"]
    assert [r["line"] for r in records.logs("a", request_id="req-1")] == [
        "line 1", "line 3", "line 5"]
    assert [r["line"] for r in records.logs("a", request_id="req-0", limit=1, newest=True)] == [
        "line 4"]
    assert records.logs("a", since=rows[-1]["ts"] + 60) == []
    assert len(records.logs("a", since=rows[0]["ts"])) == 6


def test_retired_records_keep_their_history_under_another_name(records: InvocationLog) -> None:
    """retire_records moves records and lines to <app>@deleted-<time>; the name starts empty."""
    records.record(_inv("a", 1))
    records.log("a", "r1", "i1", "", "stdout", "hello")
    retired = records.retire_records("a", when=1_700_000_123.9)
    assert retired == "a@deleted-1700000123"
    assert records.invocations("a") == [] and records.logs("a") == []
    assert [r["id"] for r in records.invocations(retired)] == ["req-1"]
    assert _lines(records, retired) == ["hello"]


def test_an_app_over_its_line_cap_loses_its_oldest_lines_only(records: InvocationLog) -> None:
    """Past 100 lines the oldest lines of that app go; another app keeps all of its own."""
    records.log("quiet", "r", "", "", "stdout", "kept")
    for i in range(250):
        records.log("chatty", "r", "", "", "stdout", f"line {i}")
    records.flush()
    records.prune_logs()
    assert _lines(records, "chatty") == [f"line {i}" for i in range(150, 250)]
    assert _lines(records, "quiet") == ["kept"]
    assert records.prune_logs() == 0


def test_an_app_over_its_byte_cap_is_pruned_to_it(records: InvocationLog) -> None:
    """Long lines count by UTF-8 bytes: 30 lines of ~1 KiB against a 10,000-byte cap."""
    for i in range(30):
        records.log("wide", "r", "", "", "stdout", f"{i:04d}" + "é" * 510)
    records.flush()
    records.prune_logs()
    kept = _lines(records, "wide")
    assert sum(len(line.encode()) for line in kept) <= 10_000
    assert kept[-1].startswith("0029") and len(kept) >= 5


def test_lines_older_than_the_retention_go(records: InvocationLog) -> None:
    """Seen from two days later, every line is past the 1-day retention."""
    records.log("a", "r", "", "", "stdout", "old")
    records.flush()
    assert records.prune_logs(now=time.time() + 2 * 86400) == 1
    assert _lines(records, "a") == []


def test_usage_sums_what_the_cost_model_prices(records: InvocationLog) -> None:
    """The sums over [since, until) are those the pure fold of the same records makes."""
    from skiff.observe.cost import Usage, usage

    for n in range(5):
        records.record(_inv("a", n, cold=n == 0, status=502 if n == 3 else 200,
                            duration_ms=150.5 + n))
    records.record(_inv("b", 9))
    got = records.usage("a", 1_700_000_000.0, 1_700_000_004.0)  # n = 0..3
    expected = usage([r for r in records.invocations("a") if r["ts"] < 1_700_000_004.0])
    assert Usage(**got) == expected
    assert (got["requests"], got["errors"], got["cold"]) == (4, 1, 1)
    assert got["step_ms"] == 4 * 200 and got["mb_init_ms"] == 128 * 5.0
    assert records.usage("nobody", 0, 2e9) == dict.fromkeys(got, 0) | {
        k: 0.0 for k in got if k not in ("requests", "errors", "cold")}
