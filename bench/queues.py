"""``python -m bench.queues [--quick] [--json OUT]``: Skiff's event plane against
Celery and Dramatiq on Redis, on the same machine in the same run.

For each system, with two workers:

- **throughput**: N no-op async invocations (10,000; 1,000 with ``--quick``)
  sent as fast as 8 client threads go; the *accept rate* is N over the time
  until the last send returned, *end-to-end* N over the time from the first
  send until the last message was processed (every handler counts itself:
  Skiff ``sdk.kv.incr("done")``, the peers ``INCR done`` in Redis);
- **enqueue→start latency**: single messages (1,000; 100 with ``--quick``), a
  random 10–40 ms pause after each; from the moment the client starts the
  enqueue (Skiff: the HTTP request; peers: ``delay()`` / ``send()``) to the
  moment the handler starts (its ``time.time()``, stored by the handler).

Skiff's broker fsyncs every accepted message, so Redis runs twice: as usually
deployed (no persistence) and with ``appendfsync always``. The system under
test (server, workers, Redis) runs on one core, the load generator on the
other; the CPU time the system under test spends per message is reported
(Skiff's includes parsing the HTTP enqueue, the peers' producer work is in
the client and is not). ``py-spy`` then samples Skiff's server during one more
throughput run and the report shows where its time goes.

The peers live in ``bench/.peers/queues`` (uv), ``redis-server`` comes from
apt. ``run(quick)`` is the stage entry point ``bench/__main__.py`` can call.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from bench import common, peers, report
from bench.common import (
    APPS,
    BENCH,
    CLIENT_CORE,
    PEERS,
    PYTHON,
    ROOT,
    SERVER_CORE,
    Client,
    Skiff,
    children,
    log,
    taskset,
    wait_until,
)
from bench.queue_peers import load

APP_DIR = APPS / "queue_noop"
APP = "queue-noop"
PEER_CODE = BENCH / "queue_peers"
PEER_ENV = "queues"
PEER_REQS = ["celery", "redis", "dramatiq[redis]", "packaging"]  # kombu imports packaging
PEER_DISTS = ["celery", "kombu", "billiard", "dramatiq", "redis"]
THREADS = 8  # concurrent enqueuers for the throughput runs
GAP_MS = (10.0, 40.0)  # pause after each single message
WARM = 50
PROFILE_SECONDS = 10
PROFILE_MESSAGES = 10_000  # enough to keep the server busy while sampled

CELERY_WORKER = ["worker", "--concurrency", "2", "--pool", "prefork", "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "--loglevel", "warning"]
DRAMATIQ_WORKER = ["--processes", "2", "--threads", "1"]


# -- installs ------------------------------------------------------------------------

def ensure() -> None:
    """The peers' environment and redis-server (from apt when missing)."""
    PEERS.mkdir(parents=True, exist_ok=True)
    peers._install_env(PEER_ENV, PEER_REQS)
    if shutil.which("redis-server"):
        return
    if os.geteuid() != 0:
        raise SystemExit("bench.queues: redis-server is missing; apt-get install redis-server")
    log("installing redis-server (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env)


def versions() -> dict:
    out = {"skiff venv": peers._versions(PYTHON, ["skiff", "uvicorn", "uvloop", "msgspec"]),
           "peers venv": peers._versions(peers.python(PEER_ENV), PEER_DISTS)}
    out["skiff venv"]["sqlite"] = sqlite3.sqlite_version
    proc = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    words = proc.stdout.split()
    out["redis-server"] = next((w[2:] for w in words if w.startswith("v=")), proc.stdout.strip())
    return out


def fsync_ms(directory: Path, n: int = 200) -> dict:
    """What one fdatasync costs on the disk the brokers write to: the floor of
    any durable enqueue."""
    fd, path = tempfile.mkstemp(dir=directory, prefix="fsync-")
    try:
        times = []
        for _ in range(n):
            os.write(fd, b"x" * 128)
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - t) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    return load.summarize(times)


# -- Skiff ------------------------------------------------------------------------------

def _skiff_sender(port: int, query: str) -> load.Send:
    client = Client(port, timeout=60)
    path = f"/{APP}/{query}"

    def send(_k: int) -> None:
        status, _, body = client.request("POST", path, b"",
                                         {"x-skiff-invocation-type": "Event"})
        if status != 202:
            raise RuntimeError(f"POST {path} -> {status}: {body[:200]!r}")

    return send


def _kv_value(server: Skiff, key: str) -> int:
    status, _, data = server.admin.request("GET", f"/_skiff/api/apps/{APP}/kv/{key}")
    if status == 404:
        return 0
    if status != 200:
        raise RuntimeError(f"kv get {key} -> {status}: {data[:200]!r}")
    return int(json.loads(data)["value"])


def _kv_set(server: Skiff, key: str, value: object) -> None:
    status, _, data = server.admin.request("PUT", f"/_skiff/api/apps/{APP}/kv/{key}",
                                           json.dumps(value).encode(),
                                           {"content-type": "application/json"})
    if status != 200:
        raise RuntimeError(f"kv put {key} -> {status}: {data[:200]!r}")


def _kv_starts(server: Skiff) -> dict[int, float]:
    out: dict[int, float] = {}
    cursor = None
    for _ in range(1000):  # pages of 1000
        q = "prefix=start:&limit=1000" + (f"&cursor={quote(cursor)}" if cursor else "")
        page = server.admin.json("GET", f"/_skiff/api/apps/{APP}/kv?{q}")
        for item in page["items"]:
            out[int(item["key"].split(":", 1)[1])] = float(item["value"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return out


def _skiff_throughput(server: Skiff, n: int, timeout: float, counted: bool = True) -> dict:
    """One flood; ``counted`` handlers count themselves in the KV, the others
    (``?count=0``) do nothing and completion is read from the invocation records."""
    if counted:
        _kv_set(server, "done", 0)

        def read() -> int:
            return _kv_value(server, "done")
        query = ""
    else:
        base = server.app(APP)["requests"]

        def read() -> int:
            return server.app(APP)["requests"] - base
        query = "?count=0"
    errors_before = server.app(APP)["errors"]
    out = load.throughput(lambda: _skiff_sender(server.port, query), read, n, THREADS, timeout,
                          cpu_roots=[server.pid], core=SERVER_CORE)
    time.sleep(0.2)
    out["extra_deliveries"] = read() - n
    out["handler_errors"] = server.app(APP)["errors"] - errors_before
    return out


def _skiff_latency(server: Skiff, samples: int, timeout: float) -> dict:
    client = Client(server.port, timeout=60)

    def send(i: int) -> None:
        status, _, body = client.request("POST", f"/{APP}/?i={i}", b"",
                                         {"x-skiff-invocation-type": "Event"})
        if status != 202:
            raise RuntimeError(f"POST -> {status}: {body[:200]!r}")

    try:
        sends = load.single(send, samples, GAP_MS, timeout=timeout)
    finally:
        client.close()
    starts: dict[int, float] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        starts = _kv_starts(server)
        if len(starts) >= len(sends):
            break
        time.sleep(0.2)
    return load.latency(sends, starts)


def _pyspy() -> str:
    exe = Path(PYTHON).parent / "py-spy"
    if exe.exists():
        return str(exe)
    found = shutil.which("py-spy")
    if found:
        return found
    log("installing py-spy into Skiff's venv")
    subprocess.run([PYTHON, "-m", "pip", "install", "--quiet", "py-spy"], check=True)
    return str(exe)


# py-spy samplers attached at once: kind -> (title, extra arguments)
_PROFILES = {
    "gil": ("samples of the thread holding the GIL (where the Python CPU time goes)", ["--gil"]),
    "wall": ("samples of every thread, idle ones too (where the wall-clock time goes)",
             ["--idle"]),
}


def _skiff_profile(server: Skiff, n: int, timeout: float, out_dir: Path) -> dict:
    """Sample the server during one more counted throughput run. One sampler
    sees only the thread holding the GIL: Skiff's server is one process whose
    Python code runs one thread at a time, so that is where its CPU goes
    (sqlite's C code runs without the GIL and shows in the other). The other
    samples every thread, idle ones too: where the time goes, fsync waits
    included."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {kind: out_dir / f"queues-profile-{kind}.txt" for kind in _PROFILES}
    spies = {}
    for kind, path in files.items():
        path.unlink(missing_ok=True)
        cmd = [_pyspy(), "record", "--pid", str(server.pid), "--duration", str(PROFILE_SECONDS),
               "--rate", "200", "--nonblocking", "--threads", "--format", "raw",
               "--output", str(path), *_PROFILES[kind][1]]
        spies[kind] = children.start(taskset(CLIENT_CORE, cmd), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # attached before the flood
        run = _skiff_throughput(server, n, timeout)
        for spy in spies.values():
            spy.wait(PROFILE_SECONDS + 30)
    finally:
        for spy in spies.values():
            children.stop(spy)
    out: dict = {"messages": n, "run": run, "seconds": PROFILE_SECONDS}
    for kind, path in files.items():
        out[kind] = (analyze_profile(path, wall=kind == "wall") if path.exists()
                     else {"error": "py-spy wrote nothing"})
        out[kind]["file"] = str(path)
    return out


def run_skiff(n: int, samples: int, timeout: float, profile_to: Path | None,
              env: dict[str, str] | None = None) -> list[dict]:
    """``env``: extra environment of the server (e.g. PYTHONPATH of another checkout)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="skiff-bench-queues-") as tmp:
        home = Path(tmp) / "home"
        entry: dict = {"load_before": _load()}
        server = Skiff(home, [APP_DIR], env=env)
        try:
            wait_until(lambda: server.app(APP)["instances"] >= 2, 60, 0.1,
                       "2 warm instances of queue-noop")
            warm = _skiff_throughput(server, WARM, 120)
            if warm["timed_out"]:
                raise RuntimeError(f"Skiff warm-up did not finish: {warm}")
            log(f"skiff: throughput of {n}")
            entry["throughput"] = _skiff_throughput(server, n, timeout)
            time.sleep(0.5)
            log(f"skiff: latency of {samples} single messages")
            entry["latency"] = _skiff_latency(server, samples, timeout)
            rows.append(_row("skiff", "skiff (SQLite, fsync per commit)",
                             "fsync'd SQLite (synchronous=FULL)",
                             "2 instances (minInstances = maxInstances = 2)", entry))
            bare: dict = {"load_before": _load()}
            log(f"skiff: throughput of {n}, handler without the KV write")
            bare["throughput"] = _skiff_throughput(server, n, timeout, counted=False)
            rows.append(_row("skiff-nokv", "skiff, handler without KV write",
                             "fsync'd SQLite (synchronous=FULL)",
                             "2 instances (minInstances = maxInstances = 2)", bare))
            if profile_to is not None:
                log(f"skiff: py-spy over {PROFILE_SECONDS} s of a throughput run")
                rows[0]["profile"] = _skiff_profile(server, max(n, PROFILE_MESSAGES), timeout,
                                                    profile_to)
            rows[0]["instance_cpus"] = _instance_cpus(server.pid)
        finally:
            server.stop()
    return rows


def _instance_cpus(pid: int) -> dict[str, str]:
    """Which cores the server's processes may use (all should be the server core)."""
    out = {}
    for p in common.tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    out[str(p)] = line.split(":", 1)[1].strip()
    return out


# -- Redis, Celery, Dramatiq ------------------------------------------------------------

def _redis_cmd(port: int, *args: str, timeout: float = 5.0) -> bytes:
    """One command over RESP; returns the raw reply (enough for PING/FLUSHALL)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        return s.recv(65536)


@contextlib.contextmanager
def redis_server(fsync: bool, workdir: Path) -> Iterator[tuple[int, int]]:
    port = common.free_port()
    durability = (["--appendonly", "yes", "--appendfsync", "always"] if fsync
                  else ["--appendonly", "no"])
    cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
           *durability, "--dir", str(workdir), "--logfile", str(workdir / "redis.log")]
    proc = children.start(taskset(SERVER_CORE, cmd), stdout=subprocess.DEVNULL,
                          stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited {proc.returncode}")
            try:
                return _redis_cmd(port, "PING").startswith(b"+PONG")
            except OSError:
                return False
        wait_until(up, 20, 0.05, "redis-server")
        yield port, proc.pid
    finally:
        children.stop(proc)


def run_peer(system: str, port: int, redis_pid: int, n: int, samples: int, timeout: float,
             workdir: Path) -> dict:
    """Start two workers, run the client (warm-up, throughput, latency), stop them."""
    _redis_cmd(port, "FLUSHALL")
    env = {**os.environ, "BENCH_REDIS_URL": f"redis://127.0.0.1:{port}/0",
           "PYTHONPATH": str(PEER_CODE), "PYTHONDONTWRITEBYTECODE": "1"}
    if system == "celery":
        worker_cmd = [peers.script(PEER_ENV, "celery"), "-A", "celery_tasks", *CELERY_WORKER]
    else:
        worker_cmd = [peers.script(PEER_ENV, "dramatiq"), "dramatiq_tasks", *DRAMATIQ_WORKER]
    wlog = workdir / f"{system}-worker.log"
    out = workdir / f"{system}.json"
    entry: dict = {"load_before": _load(), "worker_command": shlex.join(worker_cmd)}
    with open(wlog, "w") as wf:
        worker = children.start(taskset(SERVER_CORE, worker_cmd), cwd=PEER_CODE, env=env,
                                stdout=wf, stderr=subprocess.STDOUT)
    env["BENCH_CPU_ROOTS"] = f"{redis_pid},{worker.pid}"
    env["BENCH_CORE"] = "" if SERVER_CORE is None else str(SERVER_CORE)
    client = None
    try:
        client_cmd = [peers.python(PEER_ENV), str(PEER_CODE / "client.py"), system,
                      "--n", str(n), "--samples", str(samples), "--threads", str(THREADS),
                      "--warm", str(WARM), "--gap-ms", *map(str, GAP_MS),
                      "--timeout", str(timeout), "--out", str(out)]
        client = children.start(taskset(CLIENT_CORE, client_cmd), cwd=PEER_CODE, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 2 * timeout + 180
        while client.poll() is None:
            if worker.poll() is not None:
                raise RuntimeError(f"{system} workers exited {worker.returncode}:\n"
                                   + wlog.read_text()[-2000:])
            if time.monotonic() > deadline:
                raise TimeoutError(f"{system} client still running after {2 * timeout + 180} s")
            time.sleep(0.2)
        output = client.stdout.read() if client.stdout else ""
        if client.returncode != 0 or not out.exists():
            raise RuntimeError(f"{system} client exited {client.returncode}:\n{output[-2000:]}\n"
                               f"worker log:\n{wlog.read_text()[-2000:]}")
        result = json.loads(out.read_text())
        if "error" in result:
            raise RuntimeError(f"{system}: {result['error']}")
        entry.update(throughput=result["throughput"], latency=result["latency"])
        return entry
    finally:
        if client is not None:
            children.stop(client)
        children.stop(worker, grace=15)


def run_peers(n: int, samples: int, timeout: float, systems: list[str]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="skiff-bench-queues-redis-") as tmp:
        for fsync in (False, True):
            workdir = Path(tmp) / ("fsync" if fsync else "nofsync")
            workdir.mkdir()
            durability = ("Redis appendonly, appendfsync always" if fsync
                          else "Redis in memory (no AOF, no RDB)")
            with redis_server(fsync, workdir) as (port, redis_pid):
                for system in systems:
                    log(f"{system} + redis ({'appendfsync always' if fsync else 'no fsync'})")
                    entry = run_peer(system, port, redis_pid, n, samples, timeout, workdir)
                    workers = ("celery --concurrency 2 --pool prefork (2 processes)"
                               if system == "celery" else
                               "dramatiq --processes 2 --threads 1 (2 processes)")
                    key = f"{system}-redis-{'fsync' if fsync else 'nofsync'}"
                    label = f"{system} + redis ({'appendfsync always' if fsync else 'no fsync'})"
                    rows.append(_row(key, label, durability, workers, entry))
    return rows


# -- the stage ---------------------------------------------------------------------------

def _row(key: str, label: str, durability: str, workers: str, entry: dict) -> dict:
    return {"name": key, "label": label, "durability": durability, "workers": workers, **entry}


def _load() -> dict:
    """How busy the machine is, and how slow its disk's fsync, before a run."""
    fs = fsync_ms(Path(tempfile.gettempdir()), 100)
    return {"loadavg": [round(x, 2) for x in os.getloadavg()],
            "fsync_ms": {"p50": fs["p50"], "p99": fs["p99"]}, **common.machine_load(1.0)}


def run(quick: bool, *, systems: list[str] | None = None,
        profile_to: Path | None = Path(tempfile.gettempdir())) -> dict:
    systems = systems or ["skiff", "dramatiq", "celery"]
    n, samples = (1000, 100) if quick else (10_000, 1000)
    timeout = max(180.0, n / 15)
    ensure()
    result: dict = {"n": n, "samples": samples, "threads": THREADS, "gap_ms": list(GAP_MS),
                    "cores": {"system under test": SERVER_CORE, "load generator": CLIENT_CORE},
                    "fsync_ms": fsync_ms(Path(tempfile.gettempdir())),
                    "versions": versions(), "rows": []}
    if "skiff" in systems:
        result["rows"] += run_skiff(n, samples, timeout, profile_to)
    peer_systems = [s for s in ("dramatiq", "celery") if s in systems]
    if peer_systems:
        result["rows"] += run_peers(n, samples, timeout, peer_systems)
    result["ratios"] = ratios(result["rows"])
    return result


def ratios(rows: list[dict]) -> dict:
    def rate(name: str) -> float | None:
        row = next((r for r in rows if r["name"] == name), None)
        return row["throughput"].get("e2e_rate") if row and "throughput" in row else None

    out = {}
    skiff = rate("skiff")
    for peer in ("dramatiq-redis-nofsync", "dramatiq-redis-fsync", "celery-redis-nofsync",
                 "celery-redis-fsync"):
        other = rate(peer)
        if skiff and other:
            out[f"skiff / {peer}"] = round(skiff / other, 3)
    return out


# -- the profile ----------------------------------------------------------------------------

# leaves of a thread that waits for work, not in work (in the wall-clock profile)
# (a leaf in Store._write_loop itself is its sleep between batches; its work is in flush)
_IDLE_LEAVES = ("Condition.wait (threading.py", "_worker (concurrent/futures/thread.py",
                "Queue.get (queue.py", "Event.wait (threading.py", "Store._write_loop (")

# What a sample of the server was doing, by the first rule its stack matches.
_COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("accept: commit of the message to bus.db (fsync), on the event loop",
     ("EventPlane.accept_async", "SQLiteBroker")),
    ("accept: INSERT into async_invocations (events.db), on the event loop",
     ("EventPlane.accept_async",)),
    ("accept: HTTP request and 202 (uvicorn, gateway)",
     ("Gateway.", "httptools_impl", "HttpToolsProtocol")),
    ("consume: lease (Broker.receive: BEGIN, SELECT, UPDATE, COMMIT with fsync)",
     ("Broker.receive",)),
    ("consume: ack (Broker.ack: DELETE, COMMIT with fsync)", ("Broker.ack",)),
    ("consume: status running/succeeded (events.db UPDATEs, on the event loop)",
     ("EventPlane._set_status",)),
    ("consume: wake-ups (wait_async, MIN(visible_at))", ("_until_visible", "wait_async")),
    ("sdk call from the handler (kv.incr: COMMIT with fsync)",
     ("Services.call", "Platform._on_call", "SQLiteKV")),
    ("invoke: pool, instance socket, invocation record, REPORT line",
     ("Platform.invoke", "Instance.", "Pool.", "Platform.log_platform", "Store.record")),
    ("records and logs writer thread", ("Store._write_loop", "Store.flush")),
    ("thread hops (to_thread submit, pool threads waking, GIL hand-offs)",
     ("ThreadPoolExecutor.submit", "to_thread (asyncio", "_worker (concurrent/futures/thread.py")),
    ("uvloop's C code (sockets, callbacks; in the wall profile also its epoll wait)",
     ("Runner.run (asyncio/runners.py",)),
]


def _component(stack: str) -> str:
    for name, needles in _COMPONENTS:
        if name.startswith("accept: commit"):
            if all(n in stack for n in needles):
                return name
        elif any(n in stack for n in needles):
            return name
    return "other"


def analyze_profile(path: Path, *, wall: bool, top: int = 10) -> dict:
    """Aggregate py-spy's raw stacks (``thread (tid): name;outer;...;leaf count``):
    samples per thread (threads of a pool together), per component of the
    async path, the leaf frames where samples were taken, and inclusive
    samples of Skiff's own functions. In the wall-clock profile (``wall``),
    samples of threads parked waiting for work are counted apart.

    A leaf of ``Runner.run (asyncio/runners.py)`` on the main thread is uvloop's
    C code (polling, reading and writing sockets, scheduling callbacks).
    Sampling is non-blocking, so a few stacks are torn (mixed from two moments)."""
    threads: Counter[str] = Counter()
    idle: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    components: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        head, _, rest = stack.partition(": ")
        if not head.startswith("thread ("):
            rest = stack
        name, _, frames_text = rest.partition(";")
        frames = frames_text.split(";") if frames_text else []
        group = _thread_group(name)
        leaf = frames[-1] if frames else "(no Python frame)"
        total += c
        threads[group] += c
        if wall and leaf.startswith(_IDLE_LEAVES):
            idle[group] += c
            continue
        leaves[leaf] += c
        components[_component(";".join(frames))] += c
        for f in {_function(f) for f in frames if "skiff/" in f and " (" in f}:
            if not f.startswith(("up (", "main (", "run (skiff/server")):
                inclusive[f] += c

    def pct(c: int) -> float:
        return round(100 * c / total, 1) if total else 0.0

    return {
        "samples": total,
        "threads": [{"thread": t, "samples": c, "pct": pct(c), "waiting_for_work": idle[t]}
                    for t, c in threads.most_common(12)],
        "components": [{"component": k, "samples": c, "pct": pct(c)}
                       for k, c in components.most_common()],
        "top_leaves": [{"frame": f, "samples": c, "pct": pct(c)}
                       for f, c in leaves.most_common(top)],
        "top_inclusive_skiff": [{"function": f, "samples": c, "pct": pct(c)}
                                for f, c in inclusive.most_common(top * 2)],
    }


def _function(frame: str) -> str:
    """``Cls.fn (skiff/x.py:12)`` -> ``Cls.fn (skiff/x.py)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].rstrip(')')})"


def _thread_group(name: str) -> str:
    """``uvloop_3`` and ``uvloop_0`` are one pool (asyncio.to_thread's executor)."""
    base = name.rstrip("0123456789").rstrip("_-")
    return {"uvloop": "to_thread pool (uvloop_N)", "asyncio": "to_thread pool (asyncio_N)",
            "skiff-store": "skiff-store (records writer)"}.get(base, base or name)


# -- output ------------------------------------------------------------------------------

def _f(v: object, digits: int = 1) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def markdown(result: dict, command: str) -> str:
    lines = [f"### Queues: {result['n']:,} async no-op invocations, 2 workers; "
             f"{result['samples']:,} single messages", ""]
    lines += ["| system | durability | workers | end-to-end msg/s | accept msg/s | "
              "enqueue→start p50 ms | p99 ms | enqueue call p50 ms | CPU ms/msg | core busy | "
              "load avg / fsync p50 before |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        t, lat = r.get("throughput", {}), r.get("latency", {})
        e2s, call = lat.get("enqueue_to_start_ms", {}), lat.get("enqueue_call_ms", {})
        flag = " ⚠ timed out" if t.get("timed_out") else ""
        busy = t.get("core_busy")
        before = r["load_before"]
        lines.append(
            f"| {r['label']}{flag} | {r['durability']} | {r['workers']} | {_f(t.get('e2e_rate'))} "
            f"| {_f(t.get('accept_rate'))} | {_f(e2s.get('p50'), 2)} | {_f(e2s.get('p99'), 2)} "
            f"| {_f(call.get('p50'), 2)} | {_f(t.get('cpu_ms_per_msg'), 2)} "
            f"| {'—' if busy is None else f'{busy:.0%}'} "
            f"| {before['loadavg'][0]:.2f} / {before['fsync_ms']['p50']:.2f} ms |")
    lines.append("")
    for k, v in result["ratios"].items():
        lines.append(f"- end-to-end throughput {k}: **{v:.2f}×**")
    fs = result["fsync_ms"]
    lines += [
        f"- one `fdatasync` on this disk at the start: p50 {fs['p50']} ms, p99 {fs['p99']} ms "
        "(the floor of any durable enqueue; the last column shows it before each run)",
        f"- {result['threads']} client threads enqueue; single messages pause "
        f"{result['gap_ms'][0]:g}–{result['gap_ms'][1]:g} ms after each; the system under test "
        f"(server and instances, or Redis and workers) on core "
        f"{result['cores']['system under test']}, the load generator on core "
        f"{result['cores']['load generator']}; CPU ms/msg is the system under test's CPU time "
        "over the throughput run (Skiff's includes parsing the HTTP enqueue; the peers' "
        "producers serialize in the client, which is not counted)",
        "- Celery: `celery " + " ".join(CELERY_WORKER) + "`, `task_acks_late=True`, results "
        "ignored; Dramatiq: `dramatiq " + " ".join(DRAMATIQ_WORKER) + "`, default middleware",
        "- versions: " + "; ".join(f"{k}: " + (", ".join(f"{d} {v}" for d, v in vs.items())
                                               if isinstance(vs, dict) else str(vs))
                                   for k, vs in result["versions"].items()),
        f"- command: `{command}`",
    ]
    for r in result["rows"]:
        split = r.get("throughput", {}).get("cpu_ms_per_msg_by_root")
        if split and r["name"].startswith("skiff"):
            g = split[0]
            lines.append(f"- {r['label']}: CPU ms/msg: gateway process {g['own']:.3f} "
                         f"(of which in the kernel {g['own_system']:.3f}), "
                         f"zygotes and instances {g['tree'] - g['own']:.3f}")
        elif split and len(split) == 2:
            lines.append(f"- {r['label']}: CPU ms/msg: redis-server {split[0]['tree']:.3f}, "
                         f"workers {split[1]['tree']:.3f}")
    for r in result["rows"]:
        lat = r.get("latency", {})
        if lat.get("missing") or lat.get("overlapped"):
            lines.append(f"- {r['label']}: {lat.get('missing')} latency samples never started, "
                         f"{lat.get('overlapped')} started after the next was sent")
        t = r.get("throughput", {})
        if t.get("send_errors") or t.get("extra_deliveries") or t.get("handler_errors"):
            lines.append(f"- {r['label']}: {t.get('send_errors')} failed sends, "
                         f"{t.get('extra_deliveries')} extra deliveries, "
                         f"{t.get('handler_errors', 0)} handler errors")
    prof = next((r["profile"] for r in result["rows"] if "profile" in r), None)
    if prof:
        lines += _profile_markdown(prof)
    return "\n".join(lines) + "\n"


def _profile_markdown(prof: dict) -> list[str]:
    run = prof.get("run", {})
    lines = ["", f"Skiff's server under py-spy ({prof['seconds']} s of a run of "
                 f"{prof['messages']:,} messages at {_f(run.get('e2e_rate'))} msg/s):"]
    for kind, (title, _) in _PROFILES.items():
        p = prof.get(kind, {})
        if "top_leaves" not in p:
            lines += ["", f"{title}: {p.get('error', 'missing')}"]
            continue
        lines += ["", f"{title} ({p['samples']:,}; `{p['file']}`) — samples per thread:", "",
                  "| thread | samples | % | of which waiting for work |", "|---|---:|---:|---:|"]
        lines += [f"| {x['thread']} | {x['samples']:,} | {x['pct']} | {x['waiting_for_work']:,} |"
                  for x in p["threads"]]
        lines += ["", "| component of the async path | % of samples |", "|---|---:|"]
        lines += [f"| {x['component']} | {x['pct']} |" for x in p["components"]]
        lines += ["", "| top frames (where the sample was taken, waits for work excluded) | % |",
                  "|---|---:|"]
        lines += [f"| `{x['frame']}` | {x['pct']} |" for x in p["top_leaves"]]
        if kind == "gil":
            lines += ["", "| Skiff function (inclusive) | % |", "|---|---:|"]
            lines += [f"| `{x['function']}` | {x['pct']} |" for x in p["top_inclusive_skiff"]]
    return lines


def _command(argv: list[str]) -> str:
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        exe = exe.relative_to(ROOT)
    return shlex.join([str(exe), "-m", "bench.queues", *argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m bench.queues",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 invocations, 100 samples")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--only", default="skiff,dramatiq,celery",
                    help="comma-separated: skiff, dramatiq, celery")
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy run")
    ap.add_argument("--profile-dir", type=Path, default=Path(tempfile.gettempdir()),
                    help="where py-spy's collapsed stacks go (default /tmp)")
    args = ap.parse_args(argv)
    systems = [s.strip() for s in args.only.split(",") if s.strip()]
    common.install_signal_handlers()
    common.pin_harness()
    command = _command(argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    machine = report.machine()
    log(f"load average at start: {os.getloadavg()}")
    try:
        result = run(args.quick, systems=systems,
                     profile_to=None if args.no_profile else args.profile_dir)
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        return 130
    finally:
        children.stop_all()
    result.update(command=command, started=started, finished=time.strftime("%Y-%m-%d %H:%M:%S"),
                  quick=args.quick, machine=machine, leaked_processes=list(common.LEAKED))
    text = markdown(result, command)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def stage(quick: bool) -> dict:
    """The ``queues`` stage of ``python -m bench``: the results plus their markdown."""
    result = run(quick)
    result["markdown"] = markdown(result, "python -m bench --only queues"
                                  + (" --quick" if quick else ""))
    return result
