"""Triggers: what turns queue messages, published events, schedule fires and
async requests into invocations, with retries and dead-letter queues."""

from skiff.triggers.plane import EventPlane

__all__ = ["EventPlane"]
