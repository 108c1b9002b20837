"""__APP_NAME__: a scheduled job. Each fire gets an EventBridge "Scheduled Event";
the job records when it last ran, so a run can tell what is new since then."""

from __future__ import annotations

from typing import Any

from skiff import sdk


def run(since: str | None, now: str) -> dict[str, Any]:
    """Your job: what happened between ``since`` (None on the first run) and ``now``."""
    return {"since": since, "until": now}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    now = event.get("time", "")
    last = sdk.kv.get("last-run")
    result = run(last.value if last else None, now)
    sdk.kv.put("last-run", now)
    print(f"ran for {result}")
    return result
