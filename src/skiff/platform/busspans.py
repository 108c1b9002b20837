"""Bus fan-out spans: a publish is a producer span (the child of the event's
``traceparent``: the publisher's sdk-call span when an instance published, the
caller's when the admin API did, else the root of a new trace), with one producer
span per rule target under it; each target's message carries its own span, so the
delivery's invocation span is that span's child."""

from __future__ import annotations

from typing import Any

from skiff.observe import Tracing
from skiff.observe.tracing import Span


class _FanOut:
    __slots__ = ("_publish", "_targets", "traceparents")

    def __init__(self, publish: Span, targets: list[Span | None]) -> None:
        self._publish = publish
        self._targets = targets
        self.traceparents = [t.traceparent if t is not None else publish.traceparent
                             for t in targets]

    def end(self, error: str | None) -> None:
        for span in self._targets:
            if span is not None:
                span.end(0, error)
        self._publish.end(0, error, {"messaging.batch.message_count": len(self._targets)})


class PublishSpans:
    """The platform's :class:`~skiff.triggers.plane.PublishTrace`."""

    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing

    def fan_out(self, event: dict[str, Any], targets: list[tuple[str, str]]) -> _FanOut | None:
        tracing = self._tracing
        if not tracing.recording:
            return None
        kind = str(event.get("type", ""))
        base = {"messaging.system": "skiff", "cloudevents.event_type": kind,
                "cloudevents.event_id": str(event.get("id", "")),
                "cloudevents.event_source": str(event.get("source", ""))}
        publish = tracing.span(f"publish {kind}", event.get("traceparent"), kind="producer",
                               attributes={**base, "messaging.operation.type": "publish"})
        spans = [tracing.child(f"fan-out {app}", publish.traceparent, kind="producer",
                               attributes={**base, "messaging.operation.type": "send",
                                           "messaging.destination.name": queue,
                                           "faas.name": app})
                 for app, queue in targets]
        return _FanOut(publish, spans)
