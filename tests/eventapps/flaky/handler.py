"""Fails the first `fail` attempts of each job (counted in KV), then succeeds."""

import json

from skiff import sdk


def handler(event, context):
    if "rawPath" in event:  # invoked over HTTP (async): the job is the request body
        event = json.loads(event["body"])
    job = event["job"]
    attempt = sdk.kv.incr(f"attempts:{job}")
    if attempt <= event.get("fail", 0):
        raise RuntimeError(f"attempt {attempt} of {job} failed")
    return {"job": job, "attempts": attempt}
