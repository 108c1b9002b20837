"""The durable event plane: at-least-once queues, EventBridge-style patterns,
schedules, CloudEvents and the shapes handlers receive (SQS batches,
EventBridge envelopes), as small interfaces and pure functions the platform
wires together.

Errors are drawn in :mod:`skiff.bus.errors`.
"""

from skiff.bus.broker import (
    Broker,
    Delivery,
    Message,
    Outgoing,
    QueueStats,
)
from skiff.bus.errors import (
    BusError,
    InvalidEvent,
    InvalidMessage,
    InvalidPattern,
    InvalidReceipt,
    InvalidSchedule,
)
from skiff.bus.events import (
    CloudEvent,
    parse_batch_response,
    parse_http_event,
    parse_http_events,
    queue_arn,
    to_binary,
    to_eventbridge,
    to_sqs_records,
    to_structured,
    validate_event,
)
from skiff.bus.memory import MemoryBroker
from skiff.bus.patterns import matches, validate_pattern
from skiff.bus.retry import backoff
from skiff.bus.schedules import Schedule, due, parse_schedule
from skiff.bus.sqlite import SQLiteBroker
from skiff.bus.tracecontext import TraceContext, extract, inject, new_trace, parse_traceparent

__all__ = [
    "Broker",
    "BusError",
    "CloudEvent",
    "Delivery",
    "InvalidEvent",
    "InvalidMessage",
    "InvalidPattern",
    "InvalidReceipt",
    "InvalidSchedule",
    "MemoryBroker",
    "Message",
    "Outgoing",
    "QueueStats",
    "SQLiteBroker",
    "Schedule",
    "TraceContext",
    "backoff",
    "due",
    "extract",
    "inject",
    "matches",
    "new_trace",
    "parse_batch_response",
    "parse_http_event",
    "parse_http_events",
    "parse_schedule",
    "parse_traceparent",
    "queue_arn",
    "to_binary",
    "to_eventbridge",
    "to_sqs_records",
    "to_structured",
    "validate_event",
    "validate_pattern",
]
