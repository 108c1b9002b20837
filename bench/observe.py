"""The cost of observing: warm throughput of the hello handler through Skiff with
metrics, tracing and the terminal's access log off and on, in the same run.

Four servers of the same app run side by side, pinned to the server core; the
variants are measured in turn, round after round, so the machine's drifts
spread over all of them:

- ``off``: SKIFF_METRICS=0, SKIFF_ACCESS_LOG=0, no OTLP endpoint
- ``metrics``: counters and histograms recorded (the default), and pushed as OTLP
  metrics every second (``OTEL_METRIC_EXPORT_INTERVAL=1000``, 60 times the default)
  to a local receiver (a thread of the harness)
- ``metrics+traces``: and every request traced (``OTEL_TRACES_SAMPLER=always_on``):
  the gateway's server span and the handler's span, exported over OTLP/HTTP
- ``metrics+traces+access``: and an access line per request on the terminal
  (read by the harness, as a terminal would)

Goal: at most 5 % fewer requests per second with metrics and traces on.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.common import APPS, Skiff, log, tree, wait_http, write_app
from bench.warm import wrk

CONNECTIONS = 16
PATH = "/hello/?name=bench"


class _Receiver:
    """An OTLP/HTTP endpoint that takes every export (and counts the bytes)."""

    def __init__(self) -> None:
        received = self.received = [0, 0]  # exports, bytes

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length", 0))
                self.rfile.read(n)
                received[0] += 1
                received[1] += n
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _ticks(pids: list[int]) -> int:
    """utime + stime of ``pids`` (clock ticks, live ones only)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def _cpu_us(fn, n: int) -> float:  # noqa: ANN001
    """CPU microseconds of one call of ``fn`` (thread time: robust to a busy machine)."""
    fn()
    t0 = time.thread_time()
    for _ in range(n):
        fn()
    return round((time.thread_time() - t0) / n * 1e6, 2)


def micro(receiver_url: str, n: int = 20_000) -> dict:
    """What the request path pays for observing, per request, in CPU microseconds."""
    import io
    import os

    from skiff.observe import Metrics, Terminal, Tracing
    from skiff.store import Invocation

    rec = Invocation("rid", "hello", "r1", "i1", "http", False, 0.0, 1.2, 0.1, 128, 200,
                     None, time.time(), "ab" * 16)
    metrics, off = Metrics(), Tracing({})
    caller = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    os.environ["OTEL_TRACES_SAMPLER"] = "always_on"
    # a queue that holds every span of the loop: a full one would measure the drop
    on = Tracing({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver_url,
                  "OTEL_BSP_MAX_QUEUE_SIZE": str(2 * n + 10)})
    terminal = Terminal(io.StringIO())

    def traced() -> None:  # what a traced request records: its server and handler spans
        server = on.http_span("GET", "hello", "/hello/", caller)
        handler = on.child("hello handler", server.traceparent,
                           attributes={"faas.name": "hello", "faas.invocation_id": "rid"})
        assert handler is not None
        handler.end(200, None, {"faas.coldstart": False})
        server.end(200)

    out = {
        "metrics.after_invocation": _cpu_us(lambda: metrics.after_invocation(rec), n),
        "span, tracing off": _cpu_us(lambda: off.http_span("GET", "hello", "/", caller).end(200),
                                     n),
        "server + handler spans, tracing on (always_on)": _cpu_us(traced, n),
        "terminal.access (the append)": _cpu_us(lambda: terminal.access(rec, "GET", "/"), n),
    }
    on.shutdown()
    os.environ.update(OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0.1")
    tenth = Tracing({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver_url,
                     "OTEL_BSP_MAX_QUEUE_SIZE": str(2 * n + 10)})
    out["span, tracing on (traceidratio 0.1)"] = _cpu_us(
        lambda: tenth.http_span("GET", "hello", "/hello/", None).end(200), n)
    tenth.shutdown()
    del os.environ["OTEL_TRACES_SAMPLER"], os.environ["OTEL_TRACES_SAMPLER_ARG"]
    return out


def run(quick: bool) -> dict:
    seconds = 2 if quick else 8
    rounds = 2 if quick else 4
    receiver = _Receiver()
    cost = micro(receiver.url, 2_000 if quick else 20_000)
    log(f"observe: CPU per request {cost}")
    off = {"SKIFF_METRICS": "0", "SKIFF_ACCESS_LOG": "0"}
    metrics = {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": receiver.url.replace("traces", "metrics"),
               "OTEL_METRIC_EXPORT_INTERVAL": "1000"}
    traces = {**metrics, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url,
              "OTEL_TRACES_SAMPLER": "always_on"}
    variants = {
        "off": off,
        "metrics": {"SKIFF_ACCESS_LOG": "0", **metrics},
        "metrics+traces": {"SKIFF_ACCESS_LOG": "0", **traces},
        "metrics+traces+access": traces,
    }
    servers: dict[str, Skiff] = {}
    rows: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [0.0, 0.0, 0] for v in variants}  # gateway s, tree s, n
    with tempfile.TemporaryDirectory(prefix="skiff-bench-observe-") as tmp:
        apps = write_app(APPS / "hello", Path(tmp) / "apps" / "hello", "hello",
                         {"handler": "handler:handler",
                          "scaling": {"maxInstances": 64, "idleTimeout": "10m"}}).parent
        try:
            for name, env in variants.items():
                servers[name] = Skiff(Path(tmp) / name, [apps], env=env)
            for name, server in servers.items():
                wait_http(server.port, PATH)
                log(f"observe: warming {name}")
                wrk(server.port, PATH, CONNECTIONS, 1 if quick else 3)
            for r in range(rounds):
                for name, server in servers.items():
                    pids = tree(server.pid)
                    gw0, all0 = _ticks([server.pid]), _ticks(pids)
                    row = wrk(server.port, PATH, CONNECTIONS, seconds)
                    hz = os.sysconf("SC_CLK_TCK")
                    cpu[name][0] += (_ticks([server.pid]) - gw0) / hz
                    cpu[name][1] += (_ticks(pids) - all0) / hz
                    cpu[name][2] += row["requests"]
                    if row["errors"]:
                        raise RuntimeError(f"{name}: {row['errors']} errors {row['error_detail']}")
                    rows[name].append(row["rps"])
                    log(f"observe: round {r + 1} {name:<22} {row['rps']:>9.0f} req/s  "
                        f"p99 {row['p99_ms']:.2f} ms")
                    time.sleep(0.5)
        finally:
            for server in servers.values():
                server.stop()
            receiver.close()
    median = {name: statistics.median(v) for name, v in rows.items()}
    base = median["off"]
    return {
        "seconds": seconds, "rounds": rounds, "connections": CONNECTIONS,
        "rps": rows, "median_rps": median,
        "ratio_to_off": {name: round(m / base, 3) for name, m in median.items()},
        "otlp_exports": receiver.received[0], "otlp_bytes": receiver.received[1],
        "cpu_us_per_request": cost,
        # CPU the server spent per request served (robust to a busy machine, unlike req/s)
        "server_cpu_us_per_request": {
            name: {"gateway": round(g / n * 1e6, 1), "gateway+instances": round(a / n * 1e6, 1)}
            for name, (g, a, n) in cpu.items() if n},
    }
