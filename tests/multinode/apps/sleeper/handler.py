"""Takes a moment per invocation, so accepted work is still waiting when the
database goes away."""

import time


def handler(event, context):
    time.sleep(float(event.get("sleep", 0.2)))
    return {"slept": event.get("sleep", 0.2), "n": event.get("n")}
