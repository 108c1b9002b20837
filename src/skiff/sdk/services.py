"""The platform side of ``skiff.sdk``: one function per operation an app may
call. The caller's app name comes from the platform (the instance socket it
arrived on), never from the app, so an app reaches only its own namespace,
and sends only to queues it may (``may_send`` raises otherwise)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from skiff.errors import SkiffError
from skiff.store.kv import KV, Item

Send = Callable[[str, bytes, dict[str, str] | None, float], str]
Publish = Callable[[dict[str, Any]], dict]
MaySend = Callable[[str, str], None]  # (sender app, queue): raises if it may not
#: (calling app, op, args) -> answer: state machines of the app (skiff.platform.workflows)
Workflows = Callable[[str, str, dict[str, Any]], Any]


def item_dict(item: Item | None) -> dict | None:
    if item is None:
        return None
    return {"key": item.key, "value": item.value, "version": item.version,
            "expires_at": item.expires_at}


class Services:
    def __init__(self, kv: KV, send: Send | None = None, publish: Publish | None = None,
                 may_send: MaySend | None = None, workflows: Workflows | None = None) -> None:
        self.kv = kv
        self._workflows = workflows
        self._send = send
        self._publish = publish
        self._may_send = may_send

    def call(self, app: str, op: str, args: dict[str, Any]) -> Any:
        handler = getattr(self, "op_" + op.replace(".", "_"), None)
        if handler is None:
            raise SkiffError(f"unknown skiff.sdk operation {op!r}", code="unknown_operation",
                             status=400)
        return handler(app, **args)

    def op_kv_get(self, app: str, key: str) -> dict | None:
        return item_dict(self.kv.get(app, key))

    def op_kv_put(self, app: str, key: str, value: Any, ttl: float | None = None,
                  if_absent: bool = False, if_version: int | None = None) -> dict | None:
        return item_dict(self.kv.put(app, key, value, ttl=ttl, if_absent=if_absent,
                                     if_version=if_version))

    def op_kv_delete(self, app: str, key: str, if_version: int | None = None) -> bool:
        return self.kv.delete(app, key, if_version=if_version)

    def op_kv_query(self, app: str, prefix: str = "", limit: int = 100,
                    cursor: str | None = None) -> dict:
        page = self.kv.query(app, prefix, limit=limit, cursor=cursor)
        return {"items": [item_dict(i) for i in page.items], "next_cursor": page.next_cursor}

    def op_kv_incr(self, app: str, key: str, by: int = 1) -> int:
        return self.kv.incr(app, key, by)

    def check_send(self, app: str, queue: str) -> None:
        """Raise unless ``app`` may send to ``queue`` (a state machine's deploy asks it
        of the queues its definition names)."""
        if self._may_send is not None:
            self._may_send(app, queue)

    def op_queue_send(self, app: str, queue: str, body: str, base64_body: bool = False,
                      attributes: dict[str, str] | None = None, delay: float = 0.0) -> str:
        if self._send is None:
            raise SkiffError("queues are not available here", code="not_supported", status=400)
        if self._may_send is not None:
            self._may_send(app, queue)
        data = base64.b64decode(body) if base64_body else body.encode()
        return self._send(queue, data, attributes, delay)

    def op_events_publish(self, app: str, event: dict[str, Any]) -> dict:
        if self._publish is None:
            raise SkiffError("the event bus is not available here", code="not_supported",
                             status=400)
        return self._publish(event)

    def op_workflows_start(self, app: str, machine: str, input: Any = None,  # noqa: A002
                           name: str | None = None) -> dict:
        return self._workflows_call(app, "start", {"machine": machine, "input": input,
                                                   "name": name})

    def op_workflows_describe(self, app: str, execution_arn: str) -> dict:
        return self._workflows_call(app, "describe", {"execution_arn": execution_arn})

    def _workflows_call(self, app: str, op: str, args: dict[str, Any]) -> Any:
        if self._workflows is None:
            raise SkiffError("workflows are not available here", code="not_supported",
                             status=400)
        return self._workflows(app, op, args)
