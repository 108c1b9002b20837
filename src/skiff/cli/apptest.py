"""`skiff test DIR`: the gates an app passes before it ships, for its author and CI.

1. the app's own tests (pytest in DIR), 2. `skiff validate`, 3. a throwaway Skiff
(``skiff up DIR`` on a temporary home and port), 4. ``spec.checks``: each path must
answer its status, and a JSON body its JSON Schema, 5. latency: warm requests one
after another (p95 as the client sees it) and a burst that starts new instances
(cold-start p95: init + queue + duration of each new instance's first invocation,
from the server's records), against
``--max-p95`` and ``--max-cold-start-p95``. Any failed gate exits 1.

The latencies are this machine's, under its load: a gate catches a regression
measured on the same runner, not an absolute."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from skiff.errors import SkiffError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s)?$")


def parse_ms(text: str | None, option: str) -> float | None:
    """``50ms``, ``0.2s`` or ``200`` (ms) as milliseconds."""
    if text is None:
        return None
    m = _DURATION.match(text.strip())
    if not m:
        raise SkiffError(f"{option} {text!r} is not a duration: give e.g. 50ms or 0.2s",
                         code="bad_usage", status=400)
    return float(m.group(1)) * (1000 if m.group(2) == "s" else 1)


def p95(values: list[float]) -> float | None:
    """Nearest-rank 95th percentile (None without values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


@dataclass
class Outcome:
    lines: list[tuple[str, bool, str]] = field(default_factory=list)  # (gate, passed, detail)

    def add(self, gate: str, passed: bool, detail: str) -> None:
        self.lines.append((gate, passed, detail))

    @property
    def failed(self) -> list[str]:
        return [g for g, ok, _ in self.lines if not ok]


def latency_gates(out: Outcome, warm_p95: float | None, cold_p95: float | None,
                  max_p95: float | None, max_cold: float | None) -> None:
    """Judge the measurements; a gate without a measurement passes, saying so."""
    for gate, value, limit in (("warm p95", warm_p95, max_p95),
                               ("cold-start p95", cold_p95, max_cold)):
        if value is None:
            out.add(gate, True, "not measured (no samples)")
        elif limit is None:
            out.add(gate, True, f"{value:.1f} ms (no gate)")
        else:
            out.add(gate, value <= limit, f"{value:.1f} ms (gate {limit:g} ms)")


def first_requests(rows: list[dict]) -> list[float]:
    """Per instance, its first invocation's init + queue + duration ms: what a request
    that meets a new instance waits (Skiff's spare instances are forked and sandboxed
    ahead of time, so most of these are not `cold` in its records, and that is the point)."""
    first: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: r["seq"]):
        first.setdefault(r["instance"] or r["id"], r)
    return [(r["init_ms"] or 0) + (r.get("queued_ms") or 0) + (r["duration_ms"] or 0)
            for r in first.values()]


class Throwaway:
    """``skiff up DIR`` on a temporary home, until :meth:`stop`."""

    def __init__(self, directory: Path, secrets: dict[str, str]) -> None:
        from skiff.config import Config

        self.tmp = tempfile.TemporaryDirectory(prefix="skiff-test-")
        self.home = Path(self.tmp.name)
        if secrets:
            from skiff.governance import SecretStore

            store = SecretStore.open(self.home)
            for k, v in secrets.items():
                store.set(k, v)
        env = {**os.environ, "SKIFF_ENVS_DIR": str(Config.resolve().envs_dir)}
        env.pop("SKIFF_ADMIN_TOKEN", None)
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "skiff", "up", str(directory), "--port", "0", "--home",
             str(self.home)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env)
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                if line.startswith("ready:"):
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(300) or self.proc.poll() is not None:
            self.stop()
            raise SkiffError("the throwaway Skiff did not start:\n" + "\n".join(self.lines[-20:]),
                             code="deploy_failed", status=422)
        self.url = json.loads((self.home / "server.json").read_text())["url"]
        self.token = (self.home / "admin-token").read_text().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.tmp.cleanup()


def _own_tests(directory: Path) -> list[Path]:
    from skiff.manifest.hashing import SKIPPED_DIRS  # (not .skiffignore: tests are not deployed)

    return [p for p in directory.rglob("*.py") if re.fullmatch(r"test_.*\.py|.*_test\.py", p.name)
            and not SKIPPED_DIRS.intersection(p.relative_to(directory).parts)]


def run(directory: Path, *, max_p95: float | None, max_cold: float | None, requests: int,
        secrets: dict[str, str], say) -> Outcome:  # noqa: ANN001
    import httpx
    import jsonschema

    from skiff.cli.validate import check, shown

    where = shown(directory)
    out = Outcome()
    if _own_tests(directory):
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "."], cwd=directory, capture_output=True, text=True)
        summary = (done.stdout.strip().splitlines() or ["no output"])[-1]
        out.add("app tests", done.returncode == 0, summary)
        if done.returncode != 0:
            say(done.stdout[-3000:])
            return out
    else:
        out.add("app tests", True, "none found (test_*.py)")
    report = check(directory)
    out.add("validate", True, f"{where}/skiff.yaml ({report.kind or 'static'})")
    from skiff.manifest import load_manifest

    manifest = load_manifest(directory)
    say(f"starting a throwaway Skiff for {manifest.name} …")
    server = Throwaway(directory.resolve(), secrets)
    try:
        http = httpx.Client(base_url=f"{server.url}/{manifest.name}", timeout=60)
        admin = httpx.Client(base_url=f"{server.url}/_skiff/api", timeout=60,
                             headers={"authorization": f"Bearer {server.token}"})
        checks = manifest.spec.checks
        for c in checks:
            r = http.request(c.method, c.path)
            ok, detail = r.status_code == c.status, f"{c.method} {c.path} → {r.status_code}"
            if ok and c.body_schema is not None:
                try:
                    jsonschema.validate(r.json(), c.body_schema)
                    detail += ", body matches its schema"
                except (ValueError, jsonschema.ValidationError) as exc:
                    ok, detail = False, f"{detail}, body does not match its schema: " \
                                        f"{getattr(exc, 'message', exc)}"
            out.add("check", ok, detail + ("" if ok else f" (wanted {c.status})"))
        if not checks:
            r = http.get("/")
            out.add("check", r.status_code < 500, f"GET / → {r.status_code} (no spec.checks: "
                                                  "below 500 passes)")
        paths = [c.path for c in checks if c.method == "GET"] or ["/"]
        warm = []
        for i in range(requests):
            t = time.perf_counter()
            http.get(paths[i % len(paths)])
            warm.append((time.perf_counter() - t) * 1000)
        cold = None
        if report.kind not in (None, "static"):  # a burst makes new (cold) instances
            burst = min(manifest.spec.scaling.max_instances, 4)
            with ThreadPoolExecutor(burst) as pool:
                list(pool.map(lambda i: http.get(paths[i % len(paths)]), range(burst * 4)))
            rows = admin.get(f"/apps/{manifest.name}/invocations", params={"limit": 1000}).json()
            cold = p95(first_requests(rows))
        latency_gates(out, p95(warm), cold, max_p95, max_cold)
    finally:
        server.stop()
    return out


def app_test(directory: Annotated[Path, typer.Argument(help="the app directory")] = Path("."),
             max_cold_start_p95: Annotated[str | None, typer.Option(
                 help="fail when the cold-start p95 is over this (e.g. 50ms)")] = None,
             max_p95: Annotated[str | None, typer.Option(
                 help="fail when the warm p95 is over this (e.g. 200ms)")] = None,
             requests: Annotated[int, typer.Option(min=1, max=10_000,
                                                   help="warm requests to measure")] = 50,
             secret: Annotated[list[str] | None, typer.Option(
                 help="NAME=VALUE for a secret the app references (repeat)")] = None) -> None:
    """Run the app's tests, then deploy it to a throwaway Skiff: smoke and contract checks
    (spec.checks) and latency gates; exits 1 when any gate fails (for CI)."""
    from rich.markup import escape
    from rich.table import Table

    from skiff.cli.app import out

    cold, warm = parse_ms(max_cold_start_p95, "--max-cold-start-p95"), parse_ms(max_p95, "--max-p95")
    secrets = {}
    for s in secret or []:
        k, sep, v = s.partition("=")
        if not sep:
            raise SkiffError(f"--secret {s!r} is not NAME=VALUE", code="bad_usage", status=400)
        secrets[k] = v
    result = run(directory, max_p95=warm, max_cold=cold, requests=requests, secrets=secrets,
                 say=lambda text: out.print(text, markup=False, highlight=False))
    table = Table("gate", "", "detail", title=f"skiff test {directory}")
    for gate, ok, detail in result.lines:
        table.add_row(gate, "[green]pass[/]" if ok else "[red]FAIL[/]", escape(detail))
    out.print(table)
    if result.failed:
        raise SkiffError(f"{len(result.failed)} gate(s) failed: {', '.join(result.failed)}",
                         code="gate_failed", status=422)
    out.print("[green]all gates passed[/]")


def register(app: typer.Typer) -> None:
    app.command("test")(app_test)
