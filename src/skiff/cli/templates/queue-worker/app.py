"""__APP_NAME__: a queue worker. Each invocation gets a batch of messages as an SQS
event (``{"Records": [...]}``); the ones it cannot handle are reported in
``batchItemFailures`` and delivered again, the rest are done."""

from __future__ import annotations

import json
from typing import Any

from skiff import sdk


def work(job: dict[str, Any]) -> None:
    """Your work for one message; raise to have it retried."""
    if "id" not in job:
        raise ValueError("a job needs an id")
    sdk.kv.put(f"done:{job['id']}", job)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for record in event.get("Records", []):
        try:
            work(json.loads(record["body"]))
        except Exception as exc:  # noqa: BLE001 - one bad message must not fail the batch
            print(f"message {record['messageId']} failed: {exc}")
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
