"""What every stage shares: paths, CPU pinning, child processes that are always
cleaned up, a Skiff server in a subprocess, a tiny HTTP client, statistics and
PSS readings."""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
APPS = BENCH / "apps"
PEERS = BENCH / ".peers"
RESULTS = BENCH / "results"
PYTHON = str(Path(sys.executable).absolute())  # the Skiff venv's interpreter, not resolved
SKIFF = str(Path(sys.executable).absolute().parent / "skiff")

# Two cores: servers on core 0, load generators and this harness on core 1.
_CPUS = sorted(os.sched_getaffinity(0))
SERVER_CORE: int | None = _CPUS[0] if len(_CPUS) >= 2 else None
CLIENT_CORE: int | None = _CPUS[1] if len(_CPUS) >= 2 else None
SPARES = int(os.environ.get("SKIFF_SPARES", "2"))  # pre-forked instances per zygote


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# -- CPU pinning -------------------------------------------------------------------

def pin_harness() -> None:
    """Run the harness (the client side of every measurement) on the client core."""
    if CLIENT_CORE is not None:
        os.sched_setaffinity(0, {CLIENT_CORE})


@contextlib.contextmanager
def on_server_core() -> Iterator[None]:
    """Children started inside this block inherit the server core's affinity.

    Cheaper than a ``taskset`` prefix (no extra exec inside a measured spawn)
    and than ``preexec_fn`` (which forbids vfork)."""
    if SERVER_CORE is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {SERVER_CORE})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def taskset(core: int | None, cmd: list[str]) -> list[str]:
    return cmd if core is None else ["taskset", "-c", str(core), *cmd]


# -- child processes ---------------------------------------------------------------

class _Children:
    """Every long-lived process the harness starts, so that any exit path
    (normal, exception, Ctrl-C, SIGTERM) stops them. Each child leads its own
    process group; we signal only the groups of processes we started."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.lock = threading.Lock()

    def start(self, cmd: list[str], **kw: Any) -> subprocess.Popen:
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(cmd, start_new_session=True, **kw)
        with self.lock:
            self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 10.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers in the group
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        with self.lock:
            if proc in self.procs:
                self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.procs)):
            self.stop(proc, grace=5.0)


children = _Children()


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP behave like Ctrl-C, so ``finally`` blocks stop the servers."""

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what} "
                               f"(last: {value!r})")
        time.sleep(interval)


def settle(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float,
           stall: float, interval: float = 0.25) -> tuple[Any, str]:
    """Poll ``read()`` until ``done(value)`` ("done"), until the value stops changing
    for ``stall`` seconds ("stalled"), or until ``timeout`` ("timeout")."""
    deadline = time.monotonic() + timeout
    last, since = read(), time.monotonic()
    while True:
        if done(last):
            return last, "done"
        now = time.monotonic()
        if now > deadline:
            return last, "timeout"
        if now - since > stall:
            return last, "stalled"
        time.sleep(interval)
        value = read()
        if value != last:
            last, since = value, time.monotonic()


def wait_http(port: int, path: str = "/", timeout: float = 60.0) -> None:
    """Poll until a server answers ``GET path`` with any status below 500."""

    def ok() -> bool:
        try:
            status, _, _ = http_get(port, path, timeout=2)
            return status < 500
        except OSError:
            return False

    wait_until(ok, timeout, 0.05, f"http://127.0.0.1:{port}{path}")


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


class Client:
    """A keep-alive HTTP/1.1 client on one connection (reconnects when closed)."""

    def __init__(self, port: int, headers: dict[str, str] | None = None,
                 timeout: float = 60.0) -> None:
        self.port = port
        self.headers = headers or {}
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers={**self.headers,
                                                                    **(headers or {})})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.close()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str) -> Any:
        status, _, data = self.request(method, path)
        if status >= 300:
            raise RuntimeError(f"{method} {path} -> {status}: {data[:300]!r}")
        return json.loads(data) if data else None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# -- a Skiff server ------------------------------------------------------------------

class Skiff:
    """``skiff up DIRS --port 0 --home HOME`` pinned to the server core (unless
    ``pin=False``: a stage about sharing the whole machine)."""

    def __init__(self, home: Path, dirs: list[Path], env: dict[str, str] | None = None,
                 ready_timeout: float = 300.0,
                 on_spawn: Callable[[int], None] | None = None,
                 allow_failed_deploys: bool = False, pin: bool = True) -> None:
        self.home = home
        self.lines: list[str] = []
        self._ready = threading.Event()
        full_env = {**os.environ, "SKIFF_ENVS_DIR": str(PEERS / "skiff-envs"), **(env or {})}
        full_env.pop("SKIFF_ADMIN_TOKEN", None)
        full_env.pop("SKIFF_HOME", None)
        self.started = time.monotonic()
        self.proc = children.start(
            taskset(SERVER_CORE if pin else None, [SKIFF, "up", *map(str, dirs), "--port", "0",
                                  "--home", str(home)]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env)
        threading.Thread(target=self._pump, daemon=True).start()
        if on_spawn is not None:
            on_spawn(self.proc.pid)
        try:
            if not self._ready.wait(ready_timeout) or self.proc.poll() is not None:
                raise RuntimeError("skiff did not start:\n" + "\n".join(self.lines[-40:]))
        except BaseException:
            self.stop()
            raise
        self.ready_s = time.monotonic() - self.started
        self.pid = self.proc.pid  # taskset execs skiff, and skiff is a python script: one pid
        info = json.loads((home / "server.json").read_text())
        self.url = info["url"]
        self.port = int(self.url.rsplit(":", 1)[1])
        token = (home / "admin-token").read_text().strip()
        self.admin = Client(self.port, {"authorization": f"Bearer {token}"}, timeout=300)
        self.failed = [ln.strip() for ln in self.lines if "✗" in ln]
        failed = self.failed
        if failed and not allow_failed_deploys:
            self.stop()
            raise RuntimeError(f"{len(failed)} app(s) failed to deploy:\n" + "\n".join(failed[:10]))

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if len(self.lines) < 5000:
                self.lines.append(line.rstrip("\n"))
            if line.startswith("ready:"):
                self._ready.set()
        self._ready.set()

    def app(self, name: str) -> dict:
        return self.admin.json("GET", f"/_skiff/api/apps/{name}")

    def apps(self) -> list[dict]:
        return self.admin.json("GET", "/_skiff/api/apps")

    def system(self) -> dict:
        return self.admin.json("GET", "/_skiff/api/system")

    def invocations(self, name: str, limit: int = 1000) -> list[dict]:
        return self.admin.json("GET", f"/_skiff/api/apps/{name}/invocations?limit={limit}")

    def spares_ready(self, want: int) -> bool:
        """Every spare pool the server reports (per zygote, or per zygote and
        isolation profile) holds at least ``want`` pre-forked instances."""
        for z in self.system()["zygotes"].values():
            spares = z.get("spares", 0)
            counts = spares.values() if isinstance(spares, dict) else [spares]
            if any(n < want for n in counts):
                return False
        return True

    def stop(self) -> None:
        """Stop the server; then any process of its tree that outlived it (an
        instance that missed its parent's death) is recorded in ``LEAKED`` and
        killed, so one leak does not disturb the next measurement."""
        if hasattr(self, "admin"):
            self.admin.close()
        before = {p: cmdline(p) for p in tree(self.proc.pid)} if self.proc.poll() is None else {}
        children.stop(self.proc)
        deadline = time.monotonic() + 3
        alive = dict(before)
        while alive and time.monotonic() < deadline:
            alive = {p: c for p, c in alive.items() if p != self.proc.pid and cmdline(p) == c}
            if alive:
                time.sleep(0.1)
        for pid, cmd in alive.items():
            LEAKED.append({"pid": pid, "cmd": cmd[:120], "cwd": cwd(pid), "home": str(self.home)})
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if alive:
            log(f"{len(alive)} process(es) outlived the Skiff server and were killed: "
                f"{sorted(alive)}")


LEAKED: list[dict] = []  # processes of a stopped Skiff server that outlived it


# -- process trees and memory --------------------------------------------------------

def child_pids(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(x) for x in f.read().split())
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(child_pids(p))
    return seen


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes sharing them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


# -- statistics ---------------------------------------------------------------------

def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q% of the values at or below it."""
    k = max(0, math.ceil(q / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


def summarize(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = sorted(values)
    return {"n": len(v), "p50": round(percentile(v, 50), 3), "p95": round(percentile(v, 95), 3),
            "p99": round(percentile(v, 99), 3), "mean": round(sum(v) / len(v), 3),
            "min": round(v[0], 3), "max": round(v[-1], 3)}


# -- app directories -----------------------------------------------------------------

def write_app(src: Path, dest: Path, name: str, spec: dict[str, Any]) -> Path:
    """Copy the code of ``src`` to ``dest`` with a generated skiff.yaml naming
    the app ``name`` with ``spec`` (the manifest's spec mapping)."""
    import shutil

    import yaml

    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "skiff.yaml"),
                    dirs_exist_ok=True)
    manifest = {"apiVersion": "skiff.dev/v1", "kind": "MicroApp",
                "metadata": {"name": name, "owner": "bench@example.com"}, "spec": spec}
    (dest / "skiff.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return dest


# -- is the machine quiet? -----------------------------------------------------------

def _cpu_times() -> dict[str, tuple[int, int]]:
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                v = [int(x) for x in vals]
                idle = v[3] + (v[4] if len(v) > 4 else 0)
                out[name] = (sum(v), idle)
    return out


def _proc_ticks() -> dict[int, int]:
    ticks = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                ticks[int(entry)] = int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
    return ticks


def machine_load(seconds: float = 1.0) -> dict:
    """How busy each core is before a stage starts, and which processes (not ours:
    nothing of the harness runs between stages) use more than 5% of a core."""
    cpu0, ticks0 = _cpu_times(), _proc_ticks()
    time.sleep(seconds)
    cpu1, ticks1 = _cpu_times(), _proc_ticks()
    busy = {}
    for name, (total, idle) in cpu1.items():
        dt, di = total - cpu0[name][0], idle - cpu0[name][1]
        busy[name] = round(1 - di / dt, 3) if dt else 0.0
    hz = os.sysconf("SC_CLK_TCK")
    hogs = []
    for pid, t in ticks1.items():
        share = (t - ticks0.get(pid, t)) / hz / seconds
        if share > 0.05 and pid != os.getpid():
            hogs.append({"pid": pid, "cpu": round(share, 2), "cmd": cmdline(pid)[:120]})
    hogs.sort(key=lambda h: -h["cpu"])
    return {"busy": busy, "busy_processes": hogs[:10]}
