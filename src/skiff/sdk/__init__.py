"""What an app asks of the platform.

::

    from skiff import sdk

    sdk.kv.put("visits", 0, if_absent=True)
    sdk.kv.incr("visits")
    sdk.queue("orders").send({"id": 42})
    sdk.publish("order.placed", source="shop", data={"id": 42})
    sdk.secrets.get("DB_URL")
    sdk.workflows.start("checkout", {"order": 42})  # a state machine of this app
    sdk.trace_headers()  # {"traceparent": ...}: join the platform's trace

    @sdk.idempotent(key=lambda event: event["order_id"])
    def handler(event, context): ...

Inside an instance every call goes to the platform over the instance socket;
the platform decides whose namespace it is. Under ``skiff.testing`` the same
calls reach an in-memory platform.
"""

from skiff.sdk.client import (
    KV,
    Queue,
    kv,
    publish,
    queue,
    secrets,
    trace_headers,
    traceparent,
    use_transport,
    workflows,
)
from skiff.sdk.idempotency import (
    IdempotencyInProgress,
    IdempotencyKeyMismatch,
    KVIdempotencyStore,
    set_default_store,
)
from skiff.sdk.idempotency import idempotent as _idempotent


def idempotent(*, key=None, payload=None, expires: float = 3600, store=None):  # noqa: ANN001, ANN201
    """``@idempotent``: a retry of a completed invocation returns the stored result
    instead of running again (records live in the app's KV unless ``store`` is given)."""
    return _idempotent(key=key, payload=payload, expires=expires,
                       store=store if store is not None else _kv_store)


def _kv_store() -> KVIdempotencyStore:
    return KVIdempotencyStore(kv)


__all__ = ["KV", "IdempotencyInProgress", "IdempotencyKeyMismatch", "Queue", "idempotent", "kv",
           "publish", "queue", "secrets", "set_default_store", "trace_headers", "traceparent",
           "use_transport", "workflows"]
