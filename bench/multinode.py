"""``python -m bench --only multinode``: Skiff on PostgreSQL and behind haproxy.

- **async on SQLite and on PostgreSQL against Dramatiq + Redis**, in the same
  run and with bench.queues' own load (8 enqueuers, two workers, the handler
  counting itself in the KV): accept and end-to-end rates, enqueue→start
  p50/p99. Skiff on Postgres commits every accept to the database
  (synchronous_commit on; the throwaway cluster runs with fsync off, as CI's
  does, so the disk is not what is compared), Redis runs without and with
  ``appendfsync always``.
- **HTTP through haproxy** (config from ``skiff lb haproxy``) with one and two
  nodes on one database, and one node direct for reference: ``wrk`` requests/s
  and p50/p99 of a hello handler. Nodes and haproxy share the server core, so
  on this two-core machine two nodes measure the balancer's cost, not scale-out.
- **failover**: two nodes behind haproxy, a client sending GETs in a loop;
  one node is killed -9. Reported: the time from the kill until haproxy marks
  it DOWN (its stats socket), the client requests that failed (``retry-on``
  should leave none), and how many haproxy retried or redispatched.

The database is $SKIFF_BENCH_DATABASE_URL's server, else a throwaway cluster
started with .ci/postgres (its processes pinned to the server core, as Redis is).
SKIFF_BENCH_MULTINODE_PARTS=http,failover runs only those parts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

from bench import queues
from bench.common import (
    APPS,
    CLIENT_CORE,
    ROOT,
    SERVER_CORE,
    Client,
    Skiff,
    children,
    free_port,
    log,
    taskset,
    wait_until,
)
from bench.warm import wrk

WHOAMI = APPS / "whoami"
HTTP_SECONDS = (3, 10)  # quick, full
HTTP_CONNECTIONS = 16
FAILOVER_SECONDS = 6  # the client's loop after the kill


# -- the database ------------------------------------------------------------------------
class Database:
    """A server to make databases on: $SKIFF_BENCH_DATABASE_URL, else a cluster of ours."""

    def __init__(self) -> None:
        self.base = os.environ.get("SKIFF_BENCH_DATABASE_URL", "")
        self.pgdata = ""
        if not self.base:
            out = subprocess.run([str(ROOT / ".ci" / "postgres"), "start"], check=True,
                                 capture_output=True, text=True).stdout
            env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines()
                       if line.startswith("export "))
            self.base, self.pgdata = env["SKIFF_TEST_DATABASE_URL"], env["SKIFF_CI_PGDATA"]
            if SERVER_CORE is not None:  # backends fork from the postmaster: they inherit it
                pid = Path(self.pgdata, "data", "postmaster.pid").read_text().split()[0]
                subprocess.run(["taskset", "-a", "-p", "-c", str(SERVER_CORE), pid],
                               check=True, capture_output=True)

    def create(self) -> str:
        import psycopg

        name = f"skiff_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.base, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        url = self.base.rsplit("/", 1)[0] + "/" + name
        subprocess.run([str(Path(queues.PYTHON).parent / "skiff"), "migrate", "--database-url",
                        url], check=True, capture_output=True)
        return url

    def close(self) -> None:
        if self.pgdata:
            subprocess.run([str(ROOT / ".ci" / "postgres"), "stop", self.pgdata],
                           capture_output=True)


# -- (i) async ------------------------------------------------------------------------------
def run_async(quick: bool, db: Database) -> dict:
    n, samples = (1000, 100) if quick else (10_000, 1000)
    timeout = max(180.0, n / 15)
    queues.ensure()
    rows = []
    for label, env in (("SQLite", None), ("PostgreSQL", {"SKIFF_DATABASE_URL": db.create()})):
        log(f"multinode: skiff async on {label}")
        skiff_rows = queues.run_skiff(n, samples, timeout, None, env=env)
        row = skiff_rows[0]
        row.update(name=f"skiff-{label.lower()}", label=f"skiff ({label})")
        rows.append(row)
    rows += queues.run_peers(n, samples, timeout, ["dramatiq"])

    def rate(name: str) -> float | None:
        row = next((r for r in rows if r["name"] == name), None)
        return row["throughput"].get("e2e_rate") if row else None

    pg = rate("skiff-postgresql")
    out = {"n": n, "samples": samples, "rows": rows, "ratios": {}}
    for peer in ("dramatiq-redis-nofsync", "dramatiq-redis-fsync"):
        if pg and rate(peer):
            out["ratios"][f"postgres/{peer}"] = round(pg / rate(peer), 2)
    return out


# -- (ii) HTTP through haproxy -------------------------------------------------------------
class Haproxy:
    def __init__(self, nodes: list[str], workdir: Path) -> None:
        from skiff.cli.lb import haproxy_config

        self.port = free_port()
        self.socket = workdir / f"haproxy-{self.port}.sock"
        text = haproxy_config(nodes, f"127.0.0.1:{self.port}")
        # the harness reads server states from the runtime API
        text = text.replace("global\n", f"global\n    stats socket {self.socket} mode 600\n", 1)
        config = workdir / f"haproxy-{self.port}.cfg"
        config.write_text(text)
        exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.proc = children.start(taskset(SERVER_CORE, [exe, "-db", "-f", str(config)]),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self._up(), 20, 0.05, "haproxy")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"haproxy exited {self.proc.returncode}")
        return self.socket.exists() and all(s["status"] == "UP" for s in self.servers())

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> list[dict]:
        lines = self.command("show stat").splitlines()
        head = lines[0].removeprefix("# ").split(",")
        rows = [dict(zip(head, ln.split(","), strict=False)) for ln in lines[1:] if ln]
        return [r for r in rows if r["pxname"] == "skiff_nodes" and r["svname"].startswith("node")]

    def stop(self) -> None:
        children.stop(self.proc)


def _nodes(count: int, url: str, workdir: Path) -> list[Skiff]:
    key = subprocess.run([queues.PYTHON, "-c", "from skiff.governance.secrets import "
                          "generate_master_key as g; print(g())"], check=True,
                         capture_output=True, text=True).stdout.strip()
    nodes = []
    for i in range(count):
        env = {"SKIFF_DATABASE_URL": url, "SKIFF_MASTER_KEY": key, "SKIFF_NODE_NAME": f"node{i}"}
        if i:  # the host-wide uid registry stands for one host
            env["SKIFF_UID_REGISTRY"] = str(workdir / f"uids-{i}.db")
        # every node deploys the app from its own copy: a node serves a revision whose
        # code is on its disk (code bundles through the database are scaleout-sync's)
        nodes.append(Skiff(workdir / f"node{i}", [WHOAMI], env=env))
    return nodes


def run_http(quick: bool, db: Database) -> dict:
    seconds = HTTP_SECONDS[0 if quick else 1]
    rows = []
    with tempfile.TemporaryDirectory(prefix="skiff-bench-multinode-") as tmp:
        workdir = Path(tmp)
        nodes = _nodes(2, db.create(), workdir)
        try:
            for node in nodes:  # warm every node's instance
                wait_until(lambda node=node: Client(node.port).request("GET", "/whoami/")[0]
                           == 200, 60, 0.2, "whoami on every node")
            targets = [("one node, direct", None, [nodes[0]]),
                       ("haproxy, one node", "1", [nodes[0]]),
                       ("haproxy, two nodes", "2", nodes)]
            for label, key, members in targets:
                lb = Haproxy([n.url for n in members], workdir) if key else None
                try:
                    port = lb.port if lb else nodes[0].port
                    wrk(port, "/whoami/", HTTP_CONNECTIONS, 1)  # warm-up
                    log(f"multinode: wrk {label}")
                    rows.append({"target": label, **wrk(port, "/whoami/", HTTP_CONNECTIONS,
                                                        seconds)})
                finally:
                    if lb:
                        lb.stop()
        finally:
            for node in nodes:
                node.stop()
    return {"seconds": seconds, "connections": HTTP_CONNECTIONS, "rows": rows}


# -- (iii) failover ------------------------------------------------------------------------
def run_failover(quick: bool, db: Database) -> dict:
    with tempfile.TemporaryDirectory(prefix="skiff-bench-failover-") as tmp:
        workdir = Path(tmp)
        nodes = _nodes(2, db.create(), workdir)
        lb = None
        try:
            lb = Haproxy([n.url for n in nodes], workdir)
            victim = nodes[1]
            stop = threading.Event()
            sent: list[tuple[float, int, str]] = []  # (when, status, port)

            def loop() -> None:
                client = Client(lb.port, timeout=30)
                try:
                    while not stop.is_set():
                        try:
                            status, _, body = client.request("GET", "/whoami/")
                            port = json.loads(body).get("port", "") if status == 200 else ""
                        except Exception:  # noqa: BLE001 - a failed request is the figure
                            status, port = 0, ""
                            client.close()
                            client = Client(lb.port, timeout=30)
                        sent.append((time.monotonic(), status, str(port)))
                finally:
                    client.close()

            clients = [threading.Thread(target=loop, daemon=True) for _ in range(4)]
            for t in clients:
                t.start()
            time.sleep(2)
            killed = time.monotonic()
            os.kill(victim.pid, 9)
            down = None
            deadline = killed + 30
            while time.monotonic() < deadline:
                state = {s["svname"]: s["status"] for s in lb.servers()}
                if state.get("node2", "").startswith("DOWN"):
                    down = time.monotonic()
                    break
                time.sleep(0.01)
            time.sleep(FAILOVER_SECONDS)
            stop.set()
            for t in clients:
                t.join(30)
            stats = {s["svname"]: s for s in lb.servers()}
            after = [s for s in sent if s[0] >= killed]
            last_to_victim = max((s[0] for s in after if s[2] == str(victim.port)),
                                 default=killed)
            return {
                "requests": len(sent), "after_kill": len(after),
                "failed": sum(1 for s in sent if s[1] != 200),
                "failed_after_kill": sum(1 for s in after if s[1] != 200),
                "marked_down_s": round(down - killed, 3) if down else None,
                "last_answer_from_victim_s": round(last_to_victim - killed, 3),
                "retries": int(stats["node2"].get("wretr") or 0),
                "redispatches": int(stats["node2"].get("wredis") or 0),
                "health_check": "inter 1s fastinter 250ms fall 2, observe layer4",
            }
        finally:
            if lb is not None:
                lb.stop()
            for node in nodes:
                node.stop()


def stage(quick: bool) -> dict:
    db = Database()
    result: dict = {"cores": {"system under test": SERVER_CORE, "load generator": CLIENT_CORE}}
    failed = []
    try:
        parts = (("async", run_async), ("http", run_http), ("failover", run_failover))
        chosen = os.environ.get("SKIFF_BENCH_MULTINODE_PARTS", "async,http,failover").split(",")
        for part, run in parts:
            if part not in chosen:
                continue
            try:
                result[part] = run(quick, db)
            except Exception:  # noqa: BLE001 - the other parts still run; the stage fails
                result[part] = {"error": traceback.format_exc()}
                failed.append(part)
                log(f"multinode {part} failed:\n{result[part]['error']}")
    finally:
        db.close()
    if failed:
        raise RuntimeError(f"multinode parts failed: {failed}; results so far: "
                           f"{json.dumps(result)[:20000]}")
    if all(part in result for part, _ in parts):
        result["markdown"] = markdown(result, quick)
    return result


def markdown(result: dict, quick: bool) -> str:
    cmd = "python -m bench --only multinode" + (" --quick" if quick else "")
    a = result["async"]
    lines = [f"Command: `{cmd}` ({a['n']} async invocations, {a['samples']} latency samples)",
             "", "| async | accept/s | end-to-end/s | enqueue→start p50 ms | p99 ms |",
             "|---|---:|---:|---:|---:|"]
    for row in a["rows"]:
        t, lat = row.get("throughput", {}), row.get("latency", {})
        lines.append(f"| {row['label']} | {t.get('accept_rate', '-')} | {t.get('e2e_rate', '-')} "
                     f"| {lat.get('p50_ms', '-')} | {lat.get('p99_ms', '-')} |")
    lines += ["", "Ratios (end-to-end): " + ", ".join(f"{k} {v}×" for k, v in
                                                     a["ratios"].items()), "",
              f"| HTTP (wrk -c{result['http']['connections']}) | req/s | p50 ms | p99 ms "
              "| errors |", "|---|---:|---:|---:|---:|"]
    for row in result["http"]["rows"]:
        lines.append(f"| {row['target']} | {row['rps']} | {row['p50_ms']} | {row['p99_ms']} "
                     f"| {row['errors']} |")
    f = result["failover"]
    lines += ["", f"Failover (2 nodes, 4 looping clients, kill -9 of one): marked DOWN after "
              f"{f['marked_down_s']} s; {f['failed_after_kill']} of {f['after_kill']} requests "
              f"after the kill failed; haproxy retried {f['retries']} and redispatched "
              f"{f['redispatches']}."]
    return "\n".join(lines)
