"""The one object the platform and the gateway call into (``after_*``, each cheap)."""

from __future__ import annotations

from skiff.observe.metrics import Metrics
from skiff.observe.otlpmetrics import OtlpMetrics
from skiff.observe.terminal import Terminal
from skiff.observe.tracing import Tracing
from skiff.store import Invocation


class Observe:
    """Metrics, tracing and (when a terminal watches) the access log, fed by the platform.

    ``metrics``: None when they are off (SKIFF_METRICS=0). ``metrics_token``: when set,
    ``GET /metrics`` asks for ``Authorization: Bearer <it>``. ``otlp_metrics``: the
    thread that pushes the same figures over OTLP, when an endpoint is configured."""

    def __init__(self, metrics: Metrics | None = None, tracing: Tracing | None = None,
                 terminal: Terminal | None = None, *, metrics_token: str = "",
                 otlp_metrics: OtlpMetrics | None = None) -> None:
        self.metrics = metrics
        self.tracing = tracing if tracing is not None else Tracing({})
        self.terminal = terminal
        self.metrics_token = metrics_token
        self.otlp_metrics = otlp_metrics

    def after_invocation(self, rec: Invocation, method: str = "", path: str = "") -> None:
        """An invocation ended (``method``/``path``: an HTTP one's, for the access line)."""
        if self.metrics is not None:
            self.metrics.after_invocation(rec)
        if self.terminal is not None:
            self.terminal.access(rec, method, path)

    def after_output(self, app: str, stream: str, line: str, request_id: str = "") -> None:
        """A line an app wrote (already one line, escaped), or the platform wrote of it."""
        if self.terminal is not None:
            self.terminal.output(app, stream, line, request_id)

    def after_exit(self, app: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.after_exit(app, reason)

    def after_egress(self, app: str, allowed: bool, count: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.after_egress(app, allowed, count)

    def after_schedule_fire(self, app: str) -> None:
        if self.metrics is not None:
            self.metrics.after_schedule_fire(app)

    def start(self) -> None:
        if self.terminal is not None:
            self.terminal.start()
        if self.otlp_metrics is not None:
            self.otlp_metrics.start()

    def close(self) -> None:
        if self.otlp_metrics is not None:
            self.otlp_metrics.close()
        self.tracing.shutdown()
        if self.terminal is not None:
            self.terminal.close()
