"""Cold starts: the first request to a scaled-to-zero app, through the gateway,
against the usual ways to run the same handler from nothing.

Stage ``coldstart`` (the hello handler):

- Skiff: before every sample the app is scaled to zero (``DELETE
  /apps/{name}/instances`` when the server has it, else a 0.1 s idleTimeout
  with a 50 ms scaling tick, waiting for the pool to reap the instance), and
  the zygote's pre-forked spares are back; then one GET through the gateway
  on a kept-alive connection, timed in the client. The server's own record of
  each request (cold, init_ms, queued_ms, duration_ms) is matched by request id.
- a fresh interpreter per invocation (``python -I run_once.py``): spawn → output;
- python-lambda-local: spawn → exit (it prints the result last);
- functions-framework: spawn → first successful HTTP response.

Stage ``heavy``: the same Skiff measurement for an app whose init costs ~300 ms
of CPU, with and without ``scaling.preinit``, and a fresh interpreter as the
baseline.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import peers
from bench.common import (
    APPS,
    PYTHON,
    SPARES,
    Client,
    Skiff,
    children,
    free_port,
    http_get,
    log,
    on_server_core,
    summarize,
    wait_until,
    write_app,
)

EVENT = json.loads((APPS / "peers" / "event.json").read_text())


# -- Skiff --------------------------------------------------------------------------

def _spec(handler: str, extra: dict, reap_fast: bool) -> dict:
    """The manifest spec: ``extra`` may set ``scaling`` keys and ``isolation``."""
    scaling = {"maxInstances": 8, **extra.get("scaling", {})}
    if reap_fast:
        scaling["idleTimeout"] = 0.1
    spec = {"handler": handler, "resources": {"memoryMB": 512, "timeout": 30},
            "scaling": scaling}
    if "isolation" in extra:
        spec["isolation"] = extra["isolation"]
    return spec


class ColdServer:
    """A Skiff server whose apps can be scaled to zero on demand."""

    def __init__(self, work: Path, apps: dict[str, tuple[Path, dict]]) -> None:
        """``apps``: name → (code directory, spec extras: ``scaling``, ``isolation``)."""
        self.work, self.apps = work, apps
        self.server = self._start(reap_fast=False)
        probe = next(iter(apps))
        status, _, _ = self.server.admin.request("DELETE",
                                                 f"/_skiff/api/apps/{probe}/instances")
        if status < 300:
            self.mode = "delete"
        else:
            log("no DELETE /apps/{name}/instances on this server: scaling to zero by a 0.1 s "
                "idleTimeout and a 50 ms tick instead")
            self.server.stop()
            self.mode = "idle-reap"
            self.server = self._start(reap_fast=True)

    def _start(self, reap_fast: bool) -> Skiff:
        tag = "reap" if reap_fast else "default"
        root = self.work / f"apps-{tag}"
        for name, (code, extra) in self.apps.items():
            write_app(code, root / name, name, _spec("handler:handler", extra, reap_fast))
        env = {"SKIFF_TICK_SECONDS": "0.05"} if reap_fast else {}
        return Skiff(self.work / f"home-{tag}", [root], env=env)

    def to_zero(self, app: str, timeout: float = 15.0) -> None:
        s = self.server
        if self.mode == "delete":
            status, _, body = s.admin.request("DELETE", f"/_skiff/api/apps/{app}/instances")
            if status >= 300:
                raise RuntimeError(f"DELETE instances of {app}: {status} {body[:200]!r}")

        def idle() -> bool:
            a = s.app(app)
            return a["instances"] == 0 and a["starting"] == 0

        wait_until(idle, timeout, 0.01, f"{app} to scale to zero")
        wait_until(lambda: s.spares_ready(SPARES), timeout, 0.01, "spare instances")

    def series(self, app: str, path: str, n: int, budget_s: float) -> dict:
        """``n`` cold starts of ``app`` (fewer if ``budget_s`` runs out)."""
        client = Client(self.server.port)
        try:
            status, _, body = client.request("GET", path)  # connect; load the gateway's paths
            if status != 200:
                raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
            samples: list[tuple[str, float]] = []
            deadline = time.monotonic() + budget_s
            for _ in range(n):
                if time.monotonic() > deadline:
                    log(f"{app}: time budget of {budget_s:g}s spent after {len(samples)} samples")
                    break
                self.to_zero(app)
                t0 = time.perf_counter()
                status, headers, body = client.request("GET", path)
                elapsed = (time.perf_counter() - t0) * 1000
                if status != 200:
                    raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
                samples.append((headers.get("x-skiff-request-id", ""), elapsed))
        finally:
            client.close()
        records = {r["id"]: r for r in self.server.invocations(app, 1000)}
        matched = [records[rid] for rid, _ in samples if rid in records]
        cold = [r for r in matched if r["cold"]]
        return {
            "client_ms": summarize([ms for _, ms in samples]),
            "server_init_ms": summarize([r["init_ms"] for r in cold]),
            "server_queued_ms": summarize([r["queued_ms"] for r in cold]),
            "server_duration_ms": summarize([r["duration_ms"] for r in cold]),
            "cold_recorded": len(cold), "samples": len(samples),
        }

    def stop(self) -> None:
        self.server.stop()


# -- peers --------------------------------------------------------------------------

def _spawn_series(cmd: list[str], n: int, budget_s: float,
                  done: Callable[[subprocess.Popen], bytes | None]) -> dict:
    """Spawn ``cmd`` ``n`` times on the server core; time spawn → ``done(proc)``,
    which returns the output that proves the handler ran, or None."""
    times: list[float] = []
    deadline = time.monotonic() + budget_s
    for _ in range(n):
        if time.monotonic() > deadline:
            log(f"{Path(cmd[0]).name}: time budget spent after {len(times)} samples")
            break
        with on_server_core():
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
        try:
            if done(proc) is None:
                raise RuntimeError(f"{' '.join(cmd[:3])} ... gave no result")
            times.append((time.perf_counter() - t0) * 1000)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
    return {"client_ms": summarize(times), "samples": len(times)}


def fresh_python(app_dir: Path, n: int, budget_s: float) -> dict:
    cmd = [PYTHON, "-I", str(APPS / "peers" / "run_once.py"), str(app_dir), json.dumps(EVENT)]

    def printed(proc: subprocess.Popen) -> bytes | None:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        return line if line.startswith(b"{") else None

    return _spawn_series(cmd, n, budget_s, printed)


def lambda_local(n: int, budget_s: float) -> dict:
    cmd = [peers.script("lambda-local", "python-lambda-local"), "-f", "handler", "-t", "30",
           str(APPS / "hello" / "handler.py"), str(APPS / "peers" / "event.json")]

    def finished(proc: subprocess.Popen) -> bytes | None:
        out, _ = proc.communicate(timeout=60)
        return out if proc.returncode == 0 and b"hello, bench" in out else None

    return _spawn_series(cmd, n, budget_s, finished)


def functions_framework(n: int, budget_s: float) -> dict:
    """Start → first successful response, polling the port every millisecond."""
    times: list[float] = []
    deadline = time.monotonic() + budget_s
    exe = peers.script("functions-framework", "functions-framework")
    for _ in range(n):
        if time.monotonic() > deadline:
            log(f"functions-framework: time budget spent after {len(times)} samples")
            break
        port = free_port()
        cmd = [exe, "--target", "hello", "--source", str(APPS / "peers" / "gcf_main.py"),
               "--host", "127.0.0.1", "--port", str(port)]
        with on_server_core():
            t0 = time.perf_counter()
            proc = children.start(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            give_up = time.monotonic() + 30
            while True:
                try:
                    status, _, body = http_get(port, "/?name=bench", timeout=5)
                    if status == 200 and b"hello, bench" in body:
                        times.append((time.perf_counter() - t0) * 1000)
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > give_up:
                    raise RuntimeError("functions-framework did not answer within 30 s")
                time.sleep(0.001)
        finally:
            children.stop(proc)
    return {"client_ms": summarize(times), "samples": len(times)}


# -- stages -------------------------------------------------------------------------

def run_coldstart(quick: bool) -> dict:
    n = 20 if quick else 200
    n_ll, n_ff = (5, 5) if quick else (100, 50)
    budget = 120 if quick else 600
    rows = []
    with tempfile.TemporaryDirectory(prefix="skiff-bench-cold-") as tmp:
        # the default (strict) sandbox is the headline; the other levels show its cost
        levels = {"hello-cold": (APPS / "hello", {}),
                  "hello-standard": (APPS / "hello", {"isolation": "standard"}),
                  "hello-none": (APPS / "hello", {"isolation": "none"})}
        labels = {"hello-cold": ("skiff", "Skiff: first request to a scaled-to-zero app "
                                 "(client, through the gateway; default isolation: strict)"),
                  "hello-standard": ("skiff-standard", "Skiff, `isolation: standard` (no "
                                     "network namespace)"),
                  "hello-none": ("skiff-none", "Skiff, `isolation: none` (limits only)")}
        cs = ColdServer(Path(tmp), levels)
        try:
            for app, (name, label) in labels.items():
                count = n if name == "skiff" else max(10, n // 2)
                log(f"coldstart: {app}, {count} cold starts ({cs.mode})")
                rows.append({"name": name, "label": label,
                             **cs.series(app, f"/{app}/?name=bench", count, budget)})
        finally:
            cs.stop()
        mode = cs.mode
    log(f"coldstart: fresh interpreter, {n}")
    rows.append({"name": "fresh-python", "label": "fresh `python -I` per invocation "
                 "(spawn → output)", **fresh_python(APPS / "hello", n, budget)})
    log(f"coldstart: python-lambda-local, {n_ll}")
    rows.append({"name": "lambda-local", "label": "python-lambda-local (spawn → exit)",
                 **lambda_local(n_ll, budget)})
    log(f"coldstart: functions-framework, {n_ff}")
    rows.append({"name": "functions-framework", "label": "functions-framework (spawn → first "
                 "response)", **functions_framework(n_ff, budget)})
    return {"scale_to_zero": mode, "spares": SPARES, "rows": rows}


def run_heavy(quick: bool) -> dict:
    n = 10 if quick else 100
    n_fresh = 5 if quick else 30
    budget = 120 if quick else 600
    rows = []
    with tempfile.TemporaryDirectory(prefix="skiff-bench-heavy-") as tmp:
        cs = ColdServer(Path(tmp), {"heavy": (APPS / "heavy", {}),
                                    "heavy-preinit": (APPS / "heavy",
                                                      {"scaling": {"preinit": True}})})
        try:
            for app, label in (("heavy", "Skiff, init in the instance (preinit: false)"),
                               ("heavy-preinit", "Skiff, init in an app zygote (preinit: true)")):
                log(f"heavy: {app}, {n} cold starts ({cs.mode})")
                rows.append({"name": app, "label": label,
                             **cs.series(app, f"/{app}/?q=bench", n, budget)})
        finally:
            cs.stop()
        mode = cs.mode
    log(f"heavy: fresh interpreter, {n_fresh}")
    rows.append({"name": "fresh-python", "label": "fresh `python -I` per invocation "
                 "(spawn → output)", **fresh_python(APPS / "heavy", n_fresh, budget)})
    return {"scale_to_zero": mode, "spares": SPARES, "rows": rows}
