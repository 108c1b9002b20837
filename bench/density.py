"""Density: what warm idle instances and registered, scaled-to-zero apps cost.

Memory is PSS (``Pss`` of /proc/PID/smaps_rollup): pages shared by several
processes — the zygote's image, shared by every instance forked from it — are
divided among them, so the sum over processes is the memory they really take.

An instance is a child of a zygote (with any sandbox helper process above it)
working in its app's code directory (``$SKIFF_HOME/revisions/...``); the
other children of a zygote are unbound, pre-forked spares. "Platform" is the
gateway, the zygotes, the spares and any other helper process of the gateway.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from bench.common import (
    APPS,
    SPARES,
    Client,
    Skiff,
    child_pids,
    cmdline,
    cwd,
    log,
    pss_kib,
    settle,
    summarize,
    tree,
    wait_until,
    write_app,
)

MIB = 1024


def census(server: Skiff) -> dict:
    """Processes of the server's tree, by role, with their PSS.

    Each child of a zygote starts a *slot*: the instance process, plus any
    helper process the sandbox puts above it (a pid-namespace init). A slot
    with a process working in ``$SKIFF_HOME/revisions/...`` is an app
    instance; any other slot is a pre-forked spare."""
    revisions = str(server.home / "revisions")
    gateway = server.pid
    zygotes, other = [], []
    for pid in child_pids(gateway):
        (zygotes if "skiff.instance.zygote" in cmdline(pid) else other).append(pid)
    instance_slots: list[list[int]] = []
    spare_slots: list[list[int]] = []
    for z in zygotes:
        for slot_root in child_pids(z):
            slot = tree(slot_root)
            bound = any(cwd(p).startswith(revisions) for p in slot)
            (instance_slots if bound else spare_slots).append(slot)
    other = [p for root in other for p in tree(root)]
    pss = {p: pss_kib(p) for p in tree(gateway)}
    slot_pss = [sum(pss.get(p, 0) for p in slot) for slot in instance_slots]
    spares_pss = sum(pss.get(p, 0) for slot in spare_slots for p in slot)
    in_instances = {p for slot in instance_slots for p in slot}
    platform = sum(v for p, v in pss.items() if p not in in_instances)
    return {
        "processes": len(pss), "instances": len(instance_slots),
        "instance_processes": len(in_instances), "spares": len(spare_slots),
        "zygotes": len(zygotes), "other_processes": len(other),
        "api_instances": sum(a["instances"] for a in server.apps()),
        "gateway_pss_mib": round(pss.get(gateway, 0) / MIB, 1),
        "zygotes_pss_mib": round(sum(pss.get(p, 0) for p in zygotes) / MIB, 1),
        "spares_pss_mib": round(spares_pss / MIB, 1),
        "other_pss_mib": round(sum(pss.get(p, 0) for p in other) / MIB, 1),
        "instances_pss_mib": round(sum(slot_pss) / MIB, 1),
        "instance_pss_kib": summarize([float(x) for x in slot_pss]),
        "platform_pss_mib": round(platform / MIB, 1),
        "total_pss_mib": round(sum(pss.values()) / MIB, 1),
    }


def _instances(server: Skiff) -> tuple[int, int]:
    apps = server.apps()
    return sum(a["instances"] for a in apps), sum(a["starting"] for a in apps)


def warm_idle(work: Path, n: int) -> dict:
    """One app with ``minInstances: n``, once all ``n`` are up and idle."""
    apps = work / f"apps-{n}"
    write_app(APPS / "hello", apps / "idle", "idle",
              {"handler": "handler:handler",
               "scaling": {"minInstances": n, "maxInstances": n, "idleTimeout": "10m"}})
    server = Skiff(work / f"home-{n}", [apps])
    try:
        t0 = time.monotonic()
        # >= n: the deploy's trial instance may stay on top of minInstances
        (up, starting), status = settle(lambda: _instances(server), lambda v: v[0] >= n,
                                        timeout=180, stall=20)
        up_s = time.monotonic() - t0
        if status != "done":
            log(f"density: only {up} of {n} instances came up ({starting} still 'starting'; "
                f"{status})")
        time.sleep(2)  # let the last instances finish importing and settle
        out = census(server)
        out.update(n=n, ready_s=round(server.ready_s, 2), all_up_s=round(up_s, 2),
                   reached=status == "done", status=status, api_starting=starting,
                   server_errors=[ln for ln in server.lines if "Error" in ln][-5:])
        return out
    finally:
        server.stop()


class _PeakProcesses(threading.Thread):
    """Samples the size of a process tree until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self._stop_event = pid, 0, threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.1):
            self.peak = max(self.peak, len(tree(self.pid)))

    def stop(self) -> int:
        self._stop_event.set()
        self.join(2)
        return self.peak


def scaled_to_zero(work: Path, n: int, first_hits: int) -> dict:
    """``n`` tiny apps deployed by ``skiff up`` with ``idleTimeout: 1``, measured once
    every deploy's trial instance has been reaped; then ``first_hits`` cold
    first requests to distinct apps."""
    apps = work / f"many-{n}"
    for i in range(n):
        write_app(APPS / "hello", apps / f"app-{i:04d}", f"app-{i:04d}",
                  {"handler": "handler:handler", "scaling": {"maxInstances": 2,
                                                             "idleTimeout": 1}})
    peak: _PeakProcesses | None = None

    def watch(pid: int) -> None:
        nonlocal peak
        peak = _PeakProcesses(pid)
        peak.start()

    server = Skiff(work / f"home-many-{n}", [apps], ready_timeout=900, on_spawn=watch,
                   allow_failed_deploys=True)
    try:
        deployed = len(server.apps())
        if server.failed:
            log(f"density: {len(server.failed)} of {n} deploys failed, e.g. {server.failed[0]}")
        t0 = time.monotonic()
        (left, _), status = settle(lambda: _instances(server), lambda v: v == (0, 0),
                                   timeout=300, stall=30)
        zero_s = time.monotonic() - t0
        peak_procs = peak.stop() if peak else 0
        time.sleep(2)
        out = census(server)
        out.update(apps=deployed, requested=n, failed_deploys=len(server.failed),
                   deploy_errors=server.failed[:5], deploy_ready_s=round(server.ready_s, 2),
                   to_zero_s=round(zero_s, 2), to_zero_status=status,
                   peak_processes_during_deploy=peak_procs)
        # first requests to distinct scaled-to-zero apps among the n
        client = Client(server.port)
        times = []
        try:
            client.request("GET", "/_skiff/api/health")
            served = {a["name"] for a in server.apps()}
            names = [f"app-{i:04d}" for i in range(0, n, max(1, n // first_hits))]
            for name in [x for x in names if x in served][:first_hits]:
                wait_until(lambda: server.spares_ready(SPARES), 15, 0.01, "spare instances")
                t1 = time.perf_counter()
                code, _, body = client.request("GET", f"/{name}/?name=bench")
                times.append((time.perf_counter() - t1) * 1000)
                if code != 200:
                    raise RuntimeError(f"{name}: {code} {body[:200]!r}")
        finally:
            client.close()
        out["first_request_ms"] = summarize(times)
        return out
    finally:
        if peak is not None:
            peak.stop()
        server.stop()


def empty_platform(work: Path) -> dict:
    server = Skiff(work / "home-empty", [])
    try:
        time.sleep(2)
        return census(server)
    finally:
        server.stop()


def run(quick: bool) -> dict:
    sizes = (50,) if quick else (50, 200)
    many = 100 if quick else 1000
    out: dict = {"warm_idle": [], "quick_note": "quick: 50 instances and 100 apps only"
                 if quick else None}
    with tempfile.TemporaryDirectory(prefix="skiff-bench-density-") as tmp:
        work = Path(tmp)
        log("density: empty platform")
        out["empty"] = empty_platform(work)
        for n in sizes:
            log(f"density: {n} warm idle instances")
            out["warm_idle"].append(warm_idle(work, n))
        log(f"density: {many} scaled-to-zero apps (deploy via skiff up)")
        out["scaled_to_zero"] = scaled_to_zero(work, many, 10 if quick else 50)
    return out
