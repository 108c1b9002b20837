"""What the platform shows of itself: Prometheus metrics, OpenTelemetry traces
and the terminal's access and app lines. Fed through ``after_*`` calls by the
platform and the gateway; it imports neither (DESIGN.md: observe is fed by
hooks, dependencies point down the data flow).

    Observe          the one object the composition root builds and passes in
    ├── Metrics      counters on the request path, state collected at scrape time
    ├── OtlpMetrics  the same figures as OTLP (FaaS semantic conventions), from a thread
    ├── Tracing      spans, W3C traceparent, OTLP/HTTP export when configured
    ├── Terminal     access lines and app output on `skiff up` / `skiff dev`
    └── Alerting     SLO burn rates and platform rules (slo.py, pure) as alert state
"""

from skiff.observe.alerts import Alerting
from skiff.observe.metrics import Backlog, LiveSources, Metrics, PoolState, QueueState
from skiff.observe.observe import Observe
from skiff.observe.otlpmetrics import OtlpMetrics
from skiff.observe.terminal import Terminal
from skiff.observe.tracing import RESPONSE_HEADER, Span, Tracing

__all__ = ["RESPONSE_HEADER", "Alerting", "Backlog", "LiveSources", "Metrics", "Observe",
           "OtlpMetrics", "PoolState", "QueueState", "Span", "Terminal", "Tracing"]
