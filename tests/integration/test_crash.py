"""kill -9 of the platform mid-processing loses no accepted work, and with
@idempotent no side effect happens twice."""

from __future__ import annotations

import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import SkiffServer

APPS = Path(__file__).resolve().parent.parent / "crashapps"
ASYNC_ORDERS = [f"a{i}" for i in range(4)]
QUEUED_ORDERS = [f"q{i}" for i in range(4)]


def kv(server: SkiffServer, key: str, app: str = "charger"):
    r = server.admin.get(f"/apps/{app}/kv/{key}")
    return r.json()["value"] if r.status_code == 200 else None


def test_kill_9_mid_processing_then_restart(tmp_path, envs_dir):
    """Async invocations and queue messages accepted before a kill -9 are all processed
    after the restart; the ones charged before the kill are not charged again."""
    home = tmp_path / "home"
    server = SkiffServer(home, [APPS], envs_dir)
    try:
        ids = []
        for order in ASYNC_ORDERS:
            r = server.http.post("/charger/", json={"order": order},
                                 headers={"x-skiff-invocation-type": "Event"})
            assert r.status_code == 202
            ids.append(r.json()["invocation_id"])
        for order in QUEUED_ORDERS:
            server.admin.post("/queues/payments/messages", json={"body": {"order": order}})
        # every order charged, every invocation now held before its ack
        server.wait_for(lambda: all(kv(server, f"charged:{o}") == 1
                                    for o in ASYNC_ORDERS + QUEUED_ORDERS), "all charges")
    finally:
        server.stop(signal.SIGKILL)

    again = SkiffServer(home, [], envs_dir)
    try:
        assert any("delivered again" in line for line in again.lines)
        again.admin.put("/apps/charger/kv/release", content=b"true")
        for inv in ids:
            again.wait_for(lambda inv=inv: again.admin.get(f"/invocations/{inv}").json()["status"]
                           == "succeeded", f"async invocation {inv}")
        again.wait_for(lambda: not [q for q in again.admin.get("/queues").json()
                                    if q["name"] == "payments" and (q["visible"] or q["in_flight"])],
                       "the queue to drain")
        for order in ASYNC_ORDERS + QUEUED_ORDERS:
            assert kv(again, f"deliveries:{order}") >= 2, order  # delivered again after the kill
            assert kv(again, f"charged:{order}") == 1, order  # and charged exactly once
    finally:
        again.stop()


# -- many in flight: at-least-once means processed ------------------------------------
BULK = Path(__file__).resolve().parent.parent / "crashapps_bulk"
ACCEPTED = 2_500


def _accept(server: SkiffServer, entries: list[str]) -> list[str]:
    """Accept async invocations of the ledger from a few client threads (each accept is one
    fsync'd commit, so one client alone would take most of the test's time)."""
    def one(entry: str) -> str:
        r = server.admin.post("/apps/ledger/invoke", json={"entry": entry},
                              headers={"x-skiff-invocation-type": "Event"})
        assert r.status_code == 202, r.text
        return r.json()["invocation_id"]

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, entries))


def _count(server: SkiffServer, key: str) -> int:
    return kv(server, key, "ledger") or 0


def _bookings(server: SkiffServer) -> dict[str, int]:
    """Each entry's `booked:` counter (the side effect the test counts)."""
    booked, cursor = {}, None
    while True:
        page = server.admin.get("/apps/ledger/kv", params={
            "prefix": "booked:", "limit": 1000, **({"cursor": cursor} if cursor else {})}).json()
        booked |= {i["key"]: i["value"] for i in page["items"]}
        cursor = page["next_cursor"]
        if not cursor:
            return booked


def _kill_9_run(tmp_path: Path, envs_dir: Path, run: int, *, hold: bool) -> int:
    """Accept ACCEPTED async invocations, kill -9 the platform near the end of their
    processing (with ``hold``: while the attempts in flight wait inside their idempotent run,
    before any side effect), restart, and check that every one succeeded and none went to
    the DLQ. Returns how many entries were booked twice."""
    home = tmp_path / f"home-{run}"
    entries = [f"r{run}-e{i}" for i in range(ACCEPTED)]
    server = SkiffServer(home, [BULK / "ledger"], envs_dir)
    try:
        ids = _accept(server, entries)
        # near the end, so the attempts in flight are redelivered soon after the restart,
        # well inside the in-progress lease (the 60 s timeout) their records took
        server.wait_for(lambda: _count(server, "effects") >= ACCEPTED - 60, "most bookings",
                        timeout=240)
        if hold:
            server.admin.put("/apps/ledger/kv/hold", content=b"true")
            server.wait_for(lambda: _count(server, "held") >= 4, "every consumer held")
    finally:
        server.stop(signal.SIGKILL)

    again = SkiffServer(home, [], envs_dir)
    try:
        assert any("delivered again" in line for line in again.lines)
        again.admin.put("/apps/ledger/kv/hold", content=b"false")
        again.wait_for(lambda: not [q for q in again.admin.get("/queues").json()
                                    if q["name"] == "skiff:async:ledger"
                                    and (q["visible"] or q["in_flight"] or q["delayed"])],
                       "the async queue to drain", timeout=240)
        statuses = Counter(again.admin.get(f"/invocations/{inv}").json()["status"]
                           for inv in ids)
        dead = [q for q in again.admin.get("/queues").json()
                if q["name"] == "ledger-dlq" and q["visible"]]
        assert (statuses, dead) == (Counter(succeeded=ACCEPTED), []), "lost work"  # 0 lost
        booked = _bookings(again)
        assert len(booked) == ACCEPTED, "an entry was never booked"
        # the app's two increments are separate writes: a kill -9 between them leaves
        # `effects` one behind its `booked:` counter (at most one per attempt in flight)
        assert 0 <= sum(booked.values()) - _count(again, "effects") <= 8
        return sum(1 for n in booked.values() if n != 1)
    finally:
        again.stop()


@pytest.mark.timeout(400)
def test_kill_9_with_thousands_accepted_loses_none_and_repeats_none(tmp_path, envs_dir):
    """2,500 accepted async invocations of an @idempotent handler, kill -9 while the ones in
    flight are inside their idempotent run: after the restart every one succeeded, none went
    to the DLQ, and none was booked twice (a record left in progress by the dead platform's
    attempt is taken over by the redelivery, not failed until its retries run out)."""
    assert _kill_9_run(tmp_path, envs_dir, 0, hold=True) == 0


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("run", [1, 2, 3])
def test_kill_9_with_thousands_accepted_three_runs(tmp_path, envs_dir, run):
    """The same with the kill landing wherever processing is (the bug showed in 2 runs of 3).
    None is lost. An attempt killed after its side effect and before its record completed
    runs again (nothing can tell it did its effect): at most the attempts in flight (4)."""
    twice = _kill_9_run(tmp_path, envs_dir, run, hold=False)
    print(f"run {run}: {ACCEPTED} accepted, 0 lost, {twice} booked twice")
    assert twice <= 4
