"""The app side of ``skiff.sdk``: small objects whose calls travel to the
platform over the instance's socket (or to a local, in-memory platform under
``skiff.testing``)."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from skiff.errors import SkiffError
from skiff.store.kv import ConditionFailed, Item, Page

Transport = Callable[[str, dict[str, Any]], Any]
_transport: Transport | None = None


def use_transport(transport: Transport | None) -> None:
    """Route SDK calls somewhere else (``skiff.testing`` uses an in-memory platform)."""
    global _transport
    _transport = transport


def _call(op: str, **args: Any) -> Any:
    if _transport is not None:
        return _transport(op, args)
    from skiff.instance.worker import rpc

    result = rpc.call(op, args)
    if not result.ok:
        cls = ConditionFailed if result.code == "condition_failed" else SkiffError
        raise cls(result.message, code=result.code, status=result.status or None)
    return result.value


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the invocation running now (the platform's span for
    it), or None outside one. An app's own OpenTelemetry joins the platform's trace
    with ``opentelemetry.propagate.extract(sdk.trace_headers())``."""
    if _transport is not None:
        return None
    from skiff.instance.worker import current_traceparent

    return current_traceparent() or None


def trace_headers() -> dict[str, str]:
    """``{"traceparent": ...}`` for the invocation running now ({} outside one): a carrier
    for OpenTelemetry's propagators, or headers for an outgoing HTTP call."""
    tp = traceparent()
    return {"traceparent": tp} if tp else {}


def _item(d: dict | None) -> Item | None:
    return None if d is None else Item(d["key"], d["value"], d["version"], d["expires_at"])


class KV:
    """The app's own key-value store (namespaced by the platform)."""

    def get(self, key: str) -> Item | None:
        """The item (``.value``, ``.version``, ``.expires_at``) or None."""
        return _item(_call("kv.get", key=key))

    def value(self, key: str, default: Any = None) -> Any:
        item = self.get(key)
        return default if item is None else item.value

    def put(self, key: str, value: Any, *, ttl: float | None = None, if_absent: bool = False,
            if_version: int | None = None) -> Item:
        """Store a JSON value; ``if_absent``/``if_version`` make it conditional
        (``ConditionFailed`` when the condition does not hold)."""
        return _item(_call("kv.put", key=key, value=value, ttl=ttl, if_absent=if_absent,
                           if_version=if_version))  # type: ignore[return-value]

    def delete(self, key: str, *, if_version: int | None = None) -> bool:
        return _call("kv.delete", key=key, if_version=if_version)

    def query(self, prefix: str = "", *, limit: int = 100, cursor: str | None = None) -> Page:
        page = _call("kv.query", prefix=prefix, limit=limit, cursor=cursor)
        return Page([_item(i) for i in page["items"]], page["next_cursor"])  # type: ignore[misc]

    def incr(self, key: str, by: int = 1) -> int:
        """Atomically add ``by`` to an integer (0 when absent); returns the new value."""
        return _call("kv.incr", key=key, by=by)


class Queue:
    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, body: str | bytes | dict | list, *, attributes: dict[str, str] | None = None,
             delay: float = 0.0) -> str:
        """Enqueue a message (a dict or list is sent as JSON); returns its id."""
        if isinstance(body, dict | list):
            body = json.dumps(body)
        if isinstance(body, bytes):
            return _call("queue.send", queue=self.name, body=base64.b64encode(body).decode(),
                         base64_body=True, attributes=attributes, delay=delay)
        return _call("queue.send", queue=self.name, body=body, attributes=attributes, delay=delay)


def queue(name: str) -> Queue:
    return Queue(name)


def publish(type: str, source: str, data: Any = None, **attributes: Any) -> dict:  # noqa: A002
    """Publish a CloudEvent to the bus; returns its id and the apps it matched."""
    event = {"specversion": "1.0", "id": attributes.pop("id", str(uuid.uuid4())),
             "type": type, "source": source,
             "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"), **attributes}
    if data is not None:
        event["data"] = data
        event.setdefault("datacontenttype", "application/json")
    trace = traceparent()
    if trace and "traceparent" not in event:
        event["traceparent"] = trace
    return _call("events.publish", event=event)


class Workflows:
    """State machines of the calling app (those whose skiff.yaml says ``spec.app`` is
    it): ``start`` begins an execution, ``describe`` reads one (status, output, error).
    The platform answers each with what ``DescribeExecution`` holds, in snake case."""

    def start(self, machine: str, input: Any = None, *, name: str | None = None) -> dict:  # noqa: A002
        """Start an execution of ``machine`` with ``input``; ``name`` makes the start
        idempotent (the same name and input again is the same execution)."""
        return _call("workflows.start", machine=machine, input=input, name=name)

    def describe(self, execution_arn: str) -> dict:
        return _call("workflows.describe", execution_arn=execution_arn)


class Secrets:
    """Secrets declared in ``spec.secrets``, by their environment variable name."""

    def get(self, name: str) -> str:
        try:
            return os.environ[name]
        except KeyError:
            raise SkiffError(f"no secret {name!r}: declare it in skiff.yaml spec.secrets as "
                             f"{{name: {name}, ref: secret://...}}", code="secret_not_found",
                             status=404) from None


kv = KV()
secrets = Secrets()
workflows = Workflows()
