"""A queue consumer that prints the trace context each batch ran in."""

from skiff import sdk


def handler(event, context):
    if "Records" not in event:  # an obs.fanout event
        print(f"obs-worker event traceparent={sdk.traceparent()}")
        return {}
    print(f"obs-worker batch of {len(event['Records'])} traceparent={sdk.traceparent()}")
    return {}
