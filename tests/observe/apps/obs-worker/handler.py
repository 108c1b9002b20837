"""A queue consumer that prints the trace context each batch ran in."""

from skiff import sdk


def handler(event, context):
    print(f"obs-worker batch of {len(event['Records'])} traceparent={sdk.traceparent()}")
    return {}
