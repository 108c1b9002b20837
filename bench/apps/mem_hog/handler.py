"""A memory hog: each request allocates (and touches) memory in 8 MiB steps up
to the app's memoryMB, so most requests end in an out-of-memory kill and the
next one starts a new instance."""

import os

STEP = 8 << 20


def handler(event, context):
    limit = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")) << 20
    held = []
    while len(held) * STEP < limit:
        held.append(bytearray(STEP))  # zero-filled: every page is touched
    return {"held_mb": len(held) * STEP >> 20}
