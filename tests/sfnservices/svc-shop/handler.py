"""Starts and reads state machines with skiff.sdk.workflows: its own, and (refused)
another app's."""

from skiff import sdk
from skiff.errors import SkiffError


def handler(event, context):
    if "machine" not in event and "describe" not in event:  # an HTTP request
        return {"answered_by": "svc-shop"}
    if "describe" in event:
        return sdk.workflows.describe(event["describe"])
    try:
        return sdk.workflows.start(event["machine"], event.get("input"), name=event.get("name"))
    except SkiffError as exc:
        return {"error": exc.code, "message": exc.message}
