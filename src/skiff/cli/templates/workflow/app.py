"""__APP_NAME__: the steps of a workflow. The state machine in workflow/ calls this
handler once per Task state with ``{"step": ..., "order": ...}``; an exception's class
name is the error a Catch matches (OrderRefused goes to the Rejected state)."""

from __future__ import annotations

from typing import Any


class OrderRefused(Exception):
    """An order the workflow turns down (caught in the definition, not retried)."""


def check(order: dict[str, Any]) -> dict[str, Any]:
    if order.get("qty", 0) <= 0:
        raise OrderRefused(f"order {order.get('id')} has no items")
    return {"ok": True}


def fulfil(order: dict[str, Any]) -> dict[str, Any]:
    return {"shipped": order.get("qty", 0), "id": order.get("id")}


STEPS = {"check": check, "fulfil": fulfil}


def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    event = event or {}
    if "step" not in event:  # an HTTP request (or a bare `skiff invoke`): say what this is
        return {"statusCode": 200, "body": "__APP_NAME__: the steps of __APP_NAME__-flow; "
                "start it with `skiff sfn start __APP_NAME__-flow '{\"id\": 1, \"qty\": 2}' --sync`"}
    return STEPS[event["step"]](event["order"])
