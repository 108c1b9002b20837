"""kill -9 of the platform mid-processing loses no accepted work, and with
@idempotent no side effect happens twice."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.conftest import SkiffServer

APPS = Path(__file__).resolve().parent.parent / "crashapps"
ASYNC_ORDERS = [f"a{i}" for i in range(4)]
QUEUED_ORDERS = [f"q{i}" for i in range(4)]


def kv(server: SkiffServer, key: str):
    r = server.admin.get(f"/apps/charger/kv/{key}")
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
