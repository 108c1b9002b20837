"""Books each entry once: an @idempotent handler whose work takes a moment
before its side effects (the entry's `booked:` counter and `effects`).

While the `hold` KV key is true, attempts wait inside the idempotent run,
after their record is in progress and before any side effect, so a test can
kill -9 the platform exactly there."""

import time

from skiff import sdk


@sdk.idempotent(key=lambda event: event["entry"])
def handler(event, context):
    time.sleep(0.02)  # the work before the side effect (a payment call, say)
    if sdk.kv.value("hold"):
        sdk.kv.incr("held")
        while sdk.kv.value("hold"):
            time.sleep(0.05)
    sdk.kv.incr(f"booked:{event['entry']}")
    sdk.kv.incr("effects")
    return {"booked": event["entry"]}
