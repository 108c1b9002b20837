"""One real server for the observe tests, with a metrics token and a local OTLP/HTTP
receiver as its trace endpoint, a loopback HTTP upstream obs-egress may reach (an
IP-literal egress entry the operator allows); helpers to scrape and read /metrics."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SkiffServer

APPS = Path(__file__).resolve().parent / "apps"
METRICS_TOKEN = "obs-metrics-token"


class OtlpReceiver:
    """A tiny OTLP/HTTP receiver on loopback: decodes every ExportTraceServiceRequest
    (``/v1/traces``) and ExportMetricsServiceRequest (``/v1/metrics``) it is sent and
    keeps the spans and the metric exports."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
            ExportMetricsServiceResponse,
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        spans = self.spans = []
        metric_exports = self.metric_exports = []
        lock = self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                data = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/v1/metrics":
                    with lock:
                        metric_exports.append(ExportMetricsServiceRequest.FromString(data))
                    body = ExportMetricsServiceResponse().SerializeToString()
                else:
                    req = ExportTraceServiceRequest.FromString(data)
                    with lock:
                        for rs in req.resource_spans:
                            service = {a.key: a.value.string_value
                                       for a in rs.resource.attributes}
                            for ss in rs.scope_spans:
                                spans.extend((service, s) for s in ss.spans)
                    body = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = self.base + "/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def latest_metrics(self) -> dict:
        """The newest metrics export: {name: Metric} (cumulative: it has everything)."""
        with self.lock:
            last = self.metric_exports[-1] if self.metric_exports else None
        if last is None:
            return {}
        return {m.name: m for rm in last.resource_metrics for sm in rm.scope_metrics
                for m in sm.metrics}

    def by_trace(self, trace_id: str) -> list:
        with self.lock:
            return [s for _, s in self.spans if s.trace_id.hex() == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


class _Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"hello from the upstream"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    """The port of a loopback HTTP server (obs-egress's allowed destination)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path,
             otlp: OtlpReceiver, upstream: int) -> Iterator[SkiffServer]:
    apps = tmp_path_factory.mktemp("apps")
    shutil.copytree(APPS, apps, dirs_exist_ok=True)
    manifest = apps / "obs-egress" / "skiff.yaml"
    manifest.write_text(manifest.read_text().replace(
        "egress: []", f'egress: ["127.0.0.1:{upstream}"]'))
    server = SkiffServer(tmp_path_factory.mktemp("home"), [apps], envs_dir, env={
        # loopback is off limits to every app unless the operator allows it
        "SKIFF_EGRESS_ALLOW": f"127.0.0.1:{upstream}",
        "SKIFF_METRICS_TOKEN": METRICS_TOKEN,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.url,
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": otlp.base + "/v1/metrics",
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # export within a poll, not after 5 s
        "OTEL_METRIC_EXPORT_INTERVAL": "100",
        "OTEL_SERVICE_NAME": "skiff-observe-tests",
    })
    yield server
    server.stop()


Samples = list[tuple[str, dict[str, str], float]]


def scrape(server: SkiffServer, token: str = METRICS_TOKEN) -> Samples:
    resp = server.http.get("/metrics", headers={"authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    return [(s.name, s.labels, s.value)
            for fam in text_string_to_metric_families(resp.text) for s in fam.samples]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 if none)."""
    return sum(v for n, lab, v in samples
               if n == name and all(lab.get(k) == x for k, x in labels.items()))


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)
