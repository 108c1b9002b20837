"""Warm HTTP: throughput and latency of a hello Lambda handler and a small
FastAPI app through Skiff, against the same code on the usual Python servers.

Every server runs pinned to the server core (``taskset -c 0``; Skiff's
zygotes and instances inherit it), ``wrk -t1`` runs pinned to the client core.
All servers are started first and stay up; each concurrency level then runs
against every target in turn, so slow drifts in machine load spread over all
of them instead of landing on one.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import peers
from bench.common import (
    APPS,
    BENCH,
    CLIENT_CORE,
    SERVER_CORE,
    Skiff,
    children,
    free_port,
    http_get,
    log,
    pss_kib,
    taskset,
    tree,
    wait_http,
    write_app,
)

CONCURRENCY = (1, 16, 64)
LUA = BENCH / "wrk_report.lua"


@dataclass
class Target:
    name: str
    label: str
    workload: str  # "hello" | "fastapi"
    port: int
    path: str
    expect: bytes
    pid: int
    rows: list[dict] = field(default_factory=list)


def _uvicorn(env: str, app: str, app_dir: Path, port: int, lifespan: str = "off") -> list[str]:
    return [peers.script(env, "uvicorn"), app, "--app-dir", str(app_dir), "--host", "127.0.0.1",
            "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--log-level", "warning", "--lifespan", lifespan]


def _ff(port: int, asgi: bool) -> list[str]:
    cmd = [peers.script("functions-framework", "functions-framework"), "--target", "hello",
           "--source", str(APPS / "peers" / "gcf_main.py"), "--host", "127.0.0.1",
           "--port", str(port)]
    return [*cmd, "--asgi"] if asgi else cmd


def _ff_supports_asgi() -> bool:
    proc = subprocess.run([peers.script("functions-framework", "functions-framework"), "--help"],
                          capture_output=True, text=True)
    return "--asgi" in proc.stdout


def _start_peers() -> list[Target]:
    hello_q, item = "/?name=bench", "/items/42?q=bench"
    specs = [
        ("uvicorn-raw", "raw ASGI on uvicorn (uvloop + httptools): the Python ceiling", "hello",
         lambda p: _uvicorn("uvicorn", "raw_asgi:app", APPS / "peers", p), hello_q),
        ("powertools", "Powertools APIGatewayHttpResolver + minimal ASGI adapter on uvicorn",
         "hello", lambda p: _uvicorn("powertools", "powertools_asgi:app", APPS / "peers", p),
         hello_q),
        ("ff-flask", "functions-framework, default (Flask on gunicorn gthread)", "hello",
         lambda p: _ff(p, asgi=False), hello_q),
    ]
    if _ff_supports_asgi():
        specs.append(("ff-asgi", "functions-framework --asgi (Starlette on gunicorn + uvicorn "
                      "worker)", "hello", lambda p: _ff(p, asgi=True), hello_q))
    specs.append(("fastapi-uvicorn", "the FastAPI app on plain uvicorn (uvloop + httptools)",
                  "fastapi", lambda p: _uvicorn("uvicorn", "app:app", APPS / "fastapi_app", p,
                                                lifespan="on"), item))
    targets = []
    for name, label, workload, cmd, path in specs:
        port = free_port()
        proc = children.start(taskset(SERVER_CORE, cmd(port)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        expect = b"hello, bench" if workload == "hello" else b"item-42"
        targets.append(Target(name, label, workload, port, path, expect, proc.pid))
    return targets


def _start_skiff(work: Path) -> tuple[Skiff, list[Target]]:
    apps = work / "apps"
    write_app(APPS / "hello", apps / "hello", "hello",
              {"handler": "handler:handler", "scaling": {"maxInstances": 64,
                                                         "idleTimeout": "10m"}})
    write_app(APPS / "fastapi_app", apps / "fastapi-app", "fastapi-app",
              {"handler": "app:app", "scaling": {"maxInstances": 4, "idleTimeout": "10m"}})
    server = Skiff(work / "home", [apps])
    return server, [
        Target("skiff-hello", "Skiff: the hello Lambda handler", "hello", server.port,
               "/hello/?name=bench", b"hello, bench", server.pid),
        Target("skiff-fastapi", "Skiff: the FastAPI app", "fastapi", server.port,
               "/fastapi-app/items/42?q=bench", b"item-42", server.pid),
    ]


def wrk(port: int, path: str, connections: int, seconds: float) -> dict:
    cmd = taskset(CLIENT_CORE, ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s",
                                "--timeout", "10s", "-s", str(LUA),
                                f"http://127.0.0.1:{port}{path}"])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result:\n{proc.stdout}\n{proc.stderr}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    lat = raw["latency_us"]
    seconds_run = raw["duration_us"] / 1e6
    errors = sum(raw["errors"].values())
    return {"c": connections, "rps": round(raw["requests"] / seconds_run, 1),
            "p50_ms": round(lat["p50"] / 1000, 3), "p90_ms": round(lat["p90"] / 1000, 3),
            "p99_ms": round(lat["p99"] / 1000, 3), "max_ms": round(lat["max"] / 1000, 3),
            "requests": raw["requests"], "errors": errors, "error_detail": raw["errors"]}


def run(quick: bool) -> dict:
    seconds = 2 if quick else 10
    warmup = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="skiff-bench-warm-") as tmp:
        skiff = None
        peer_targets: list[Target] = []
        try:
            skiff, skiff_targets = _start_skiff(Path(tmp))
            peer_targets = _start_peers()
            targets = skiff_targets + peer_targets
            for t in targets:
                wait_http(t.port, t.path, timeout=60)
                status, _, body = http_get(t.port, t.path)
                if status != 200 or t.expect not in body:
                    raise RuntimeError(f"{t.name}: GET {t.path} -> {status} {body[:200]!r}")
            for t in targets:  # start instances, fill caches, let the JITs... there are none
                log(f"warm: warming {t.name}")
                wrk(t.port, t.path, max(CONCURRENCY), warmup)
            for c in CONCURRENCY:
                for t in targets:
                    row = wrk(t.port, t.path, c, seconds)
                    log(f"warm: {t.name:<16} c={c:<3} {row['rps']:>9.0f} req/s  "
                        f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms"
                        + (f"  errors {row['errors']}" if row["errors"] else ""))
                    t.rows.append(row)
                    time.sleep(0.5)
            memory = {t.name: sum(pss_kib(p) for p in tree(t.pid)) for t in peer_targets}
            memory["skiff (gateway, zygotes, every instance)"] = sum(
                pss_kib(p) for p in tree(skiff.pid))
            skiff_instances = {a: skiff.app(a)["instances"] for a in ("hello", "fastapi-app")}
        finally:
            for t in peer_targets:
                proc = next((p for p in children.procs if p.pid == t.pid), None)
                if proc is not None:
                    children.stop(proc)
            if skiff is not None:
                skiff.stop()
    return {
        "seconds": seconds, "warmup_seconds": warmup, "concurrency": list(CONCURRENCY),
        "pinning": f"servers on core {SERVER_CORE} (taskset, inherited by Skiff's zygotes and "
                   f"instances), wrk -t1 on core {CLIENT_CORE}",
        "targets": [{"name": t.name, "label": t.label, "workload": t.workload, "path": t.path,
                     "rows": t.rows} for t in targets],
        "pss_kib_after": memory, "skiff_instances_after": skiff_instances,
    }
