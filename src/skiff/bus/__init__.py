"""The durable event plane: at-least-once queues, EventBridge-style patterns,
schedules, CloudEvents and the shapes handlers receive (SQS batches,
EventBridge envelopes)."""

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
from skiff.bus.memory import MemoryBroker
from skiff.bus.sqlite import SQLiteBroker

__all__ = [
    "Broker",
    "BusError",
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
]
