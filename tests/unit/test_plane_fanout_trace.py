"""A publish's fan-out, traced: each rule target's message carries its own span as the
parent of its delivery, and a failed fan-out ends the spans with the broker's error."""

from __future__ import annotations

import pytest

from skiff.bus import MemoryBroker
from skiff.errors import SkiffError
from skiff.manifest import parse_manifest
from skiff.store.trigger_state import SQLiteTriggerState
from skiff.triggers import EventPlane
from skiff.triggers.plane import _AppWiring, rule_queue


class _Trace:
    def __init__(self) -> None:
        self.targets: list[tuple[str, str]] = []
        self.ended: list[str | None] = []

    def fan_out(self, event: dict, targets: list[tuple[str, str]]) -> _Trace:
        self.targets = targets
        self.traceparents = [f"00-{'a' * 32}-{n + 1:016x}-01" for n in range(len(targets))]
        return self

    def end(self, error: str | None) -> None:
        self.ended.append(error)


def _plane(tmp_path, trace: _Trace) -> tuple[EventPlane, MemoryBroker]:  # noqa: ANN001
    broker = MemoryBroker()
    plane = EventPlane(broker, SQLiteTriggerState(tmp_path / "events.db"), None,  # type: ignore[arg-type]
                       log=lambda *a: None, trace=trace)
    for app in ("billing", "mail"):
        manifest = parse_manifest({"apiVersion": "skiff.dev/v1", "kind": "MicroApp",
                                   "metadata": {"name": app}, "spec": {"handler": "a:h"}})
        plane.apps[app] = _AppWiring(manifest, rules=[(0, {"type": ["order.placed"]},
                                                        "cloudevents")])
    return plane, broker


EVENT = {"specversion": "1.0", "id": "e1", "type": "order.placed", "source": "shop",
         "traceparent": f"00-{'b' * 32}-{'c' * 16}-01"}


def test_each_target_carries_its_fan_out_span(tmp_path) -> None:  # noqa: ANN001
    trace = _Trace()
    plane, broker = _plane(tmp_path, trace)
    assert plane.publish(dict(EVENT))["matched"] == ["billing", "mail"]
    assert trace.targets == [("billing", rule_queue("billing", 0)), ("mail", rule_queue("mail", 0))]
    assert trace.ended == [None]
    for n, app in enumerate(("billing", "mail")):
        [d] = broker.receive(rule_queue(app, 0), max_messages=1, visibility_timeout=30)
        assert d.attributes == {"traceparent": trace.traceparents[n]}


def test_a_failed_fan_out_ends_its_spans_with_the_error(tmp_path) -> None:  # noqa: ANN001
    trace = _Trace()
    plane, broker = _plane(tmp_path, trace)

    def down(entries: object) -> list[str]:
        raise SkiffError("the broker is down", code="broker_unavailable", status=503)

    broker.send_many = down  # type: ignore[method-assign]
    with pytest.raises(SkiffError):
        plane.publish(dict(EVENT))
    assert trace.ended == ["broker_unavailable"]


def test_untraced_targets_keep_the_events_traceparent(tmp_path) -> None:  # noqa: ANN001
    plane, broker = _plane(tmp_path, _Trace())
    plane.trace = None
    plane.publish(dict(EVENT))
    [d] = broker.receive(rule_queue("mail", 0), max_messages=1, visibility_timeout=30)
    assert d.attributes == {"traceparent": EVENT["traceparent"]}
