"""Idempotent handlers: a side effect runs once per key, however often an
at-least-once delivery retries the event.

The model is Powertools' idempotency utility. Before the handler runs, a
record ``{key, status: in_progress, payload_hash, expires_at,
in_progress_expiry}`` is created only if none exists; the handler's result
completes it; a retry with the same key then gets the stored result without
running the handler. A failing handler deletes its record so a retry can run.
A record left ``in_progress`` by a crashed run is taken over once its
``in_progress_expiry`` passes (by default the invocation's remaining time),
or at once by another attempt of the same invocation.

Why that takeover is sound: the record names the :class:`Attempt` that wrote
it (the platform's invocation id, the same on every delivery of an async
invocation, and a token of the process that ran it). The platform runs one
attempt of an invocation at a time: a message is delivered again only after
the attempt that leased it settled, was stopped at its timeout (the lease
outlives it), or died with the platform (instances die with it, and no write
of theirs can land after). So a record of invocation I written by another
process is an abandoned one. Waiting for its lease instead would make every
retry fail with IdempotencyInProgress until the retries ran out, and an
accepted message went to the dead-letter queue unprocessed (hardening item
19, seen in 2 of 3 kill -9 runs of 2,500 messages).

:class:`Idempotency` owns all of that logic; an :class:`IdempotencyStore`
implements four primitives (compare-and-set on an opaque record version).
:class:`KVIdempotencyStore` puts the records in any KV namespace view (an
app's ``skiff.sdk`` KV), :class:`MemoryIdempotencyStore` in a dict.

Errors::

    SkiffError
    └── IdempotencyError            500 idempotency_error
        ├── IdempotencyKeyMismatch  422 idempotency_payload_mismatch  same key, other payload
        ├── IdempotencyInProgress   409 idempotency_in_progress       a run with this key is live
        └── (code idempotency_result_not_json, 500)                   the result cannot be stored
"""

from __future__ import annotations

import abc
import functools
import hashlib
import inspect
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, TypeVar

from skiff.errors import SkiffError

log = logging.getLogger("skiff.idempotency")

Clock = Callable[[], float]
Status = Literal["in_progress", "completed"]
T = TypeVar("T")

#: Lambda's longest invocation; the in-progress lease when nothing says better.
DEFAULT_IN_PROGRESS_TIMEOUT = 900.0


class IdempotencyError(SkiffError):
    status = 500
    code = "idempotency_error"


class IdempotencyKeyMismatch(IdempotencyError):
    status = 422
    code = "idempotency_payload_mismatch"


class IdempotencyInProgress(IdempotencyError):
    status = 409
    code = "idempotency_in_progress"


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    key: str
    status: Status
    payload_hash: str
    expires_at: float
    in_progress_expiry: float | None = None
    result: Any = None
    #: The store's concurrency token for compare-and-set; opaque to the logic.
    version: int | None = None
    #: Who holds an in-progress record (:class:`Attempt`); None when unknown.
    invocation: str | None = None
    attempt: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "payload_hash": self.payload_hash,
                "expires_at": self.expires_at, "in_progress_expiry": self.in_progress_expiry,
                "result": self.result, "invocation": self.invocation, "attempt": self.attempt}

    @classmethod
    def from_json(cls, key: str, doc: dict[str, Any], version: int | None) -> IdempotencyRecord:
        return cls(key, doc["status"], doc["payload_hash"], doc["expires_at"],
                   doc.get("in_progress_expiry"), doc.get("result"), version,
                   doc.get("invocation"), doc.get("attempt"))


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt at an invocation: ``invocation`` is the platform's request id
    (the same on every delivery of one async invocation or event), ``token``
    names the process that runs this attempt."""

    invocation: str
    token: str


class IdempotencyStore(abc.ABC):
    """Four primitives; each returns the stored record (with its new version)
    or a falsy value when its condition did not hold."""

    @abc.abstractmethod
    def put_if_absent(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        """Store ``record`` unless a record with its key exists."""

    @abc.abstractmethod
    def get(self, key: str) -> IdempotencyRecord | None: ...

    @abc.abstractmethod
    def update(self, record: IdempotencyRecord, *,
               expected: IdempotencyRecord) -> IdempotencyRecord | None:
        """Replace the record only if it is still at ``expected.version``."""

    @abc.abstractmethod
    def delete(self, key: str, *, expected: IdempotencyRecord | None = None) -> bool:
        """Delete the record (only at ``expected.version`` if given)."""


class MemoryIdempotencyStore(IdempotencyStore):
    """Records in this process only: right for tests and ``skiff dev``; wrong
    for instances that run in several processes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, IdempotencyRecord] = {}
        self._versions = 0

    def _stamp(self, record: IdempotencyRecord) -> IdempotencyRecord:
        self._versions += 1
        stored = replace(record, version=self._versions)
        self._records[record.key] = stored
        return stored

    def put_if_absent(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        with self._lock:
            return None if record.key in self._records else self._stamp(record)

    def get(self, key: str) -> IdempotencyRecord | None:
        with self._lock:
            return self._records.get(key)

    def update(self, record: IdempotencyRecord, *,
               expected: IdempotencyRecord) -> IdempotencyRecord | None:
        with self._lock:
            current = self._records.get(record.key)
            if current is None or current.version != expected.version:
                return None
            return self._stamp(record)

    def delete(self, key: str, *, expected: IdempotencyRecord | None = None) -> bool:
        with self._lock:
            current = self._records.get(key)
            if current is None or (expected is not None and current.version != expected.version):
                return False
            del self._records[key]
            return True


class ScopedKV(Protocol):
    """What :class:`KVIdempotencyStore` needs: one namespace of a KV store
    (``skiff.store.kv.NamespacedKV`` or the SDK's KV over IPC). A failed
    condition must raise an error whose ``code`` is ``condition_failed``."""

    def get(self, key: str) -> Any: ...

    def put(self, key: str, value: Any, *, ttl: float | None = None, if_absent: bool = False,
            if_version: int | None = None) -> Any: ...

    def delete(self, key: str, *, if_version: int | None = None) -> bool: ...


class KVIdempotencyStore(IdempotencyStore):
    """Records as KV items under ``prefix``; the item version is the record
    version, and the item's TTL lets the KV drop records that expired."""

    def __init__(self, kv: ScopedKV, *, prefix: str = "idempotency:",
                 clock: Clock = time.time) -> None:
        self.kv = kv
        self.prefix = prefix
        self.clock = clock

    def _ttl(self, record: IdempotencyRecord) -> float:
        until = max(record.expires_at, record.in_progress_expiry or 0.0)
        return max(until - self.clock(), 1.0)

    def _record(self, key: str, item: Any) -> IdempotencyRecord:
        return IdempotencyRecord.from_json(key, item.value, item.version)

    def put_if_absent(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        try:
            item = self.kv.put(self.prefix + record.key, record.to_json(),
                               ttl=self._ttl(record), if_absent=True)
        except SkiffError as exc:
            if exc.code != "condition_failed":
                raise
            return None
        return self._record(record.key, item)

    def get(self, key: str) -> IdempotencyRecord | None:
        item = self.kv.get(self.prefix + key)
        return None if item is None else self._record(key, item)

    def update(self, record: IdempotencyRecord, *,
               expected: IdempotencyRecord) -> IdempotencyRecord | None:
        try:
            item = self.kv.put(self.prefix + record.key, record.to_json(),
                               ttl=self._ttl(record), if_version=expected.version)
        except SkiffError as exc:
            if exc.code != "condition_failed":
                raise
            return None
        return self._record(record.key, item)

    def delete(self, key: str, *, expected: IdempotencyRecord | None = None) -> bool:
        try:
            return self.kv.delete(self.prefix + key,
                                  if_version=None if expected is None else expected.version)
        except SkiffError as exc:
            if exc.code != "condition_failed":
                raise
            return False


@dataclass(frozen=True, slots=True)
class _Begun:
    owned: IdempotencyRecord | None  # we run the function and own this record
    result: Any = None  # otherwise: the stored result to return


class Idempotency:
    """The logic of idempotent execution over an :class:`IdempotencyStore`."""

    def __init__(self, store: IdempotencyStore, *, clock: Clock = time.time) -> None:
        self.store = store
        self.clock = clock

    def run(self, key: str, payload: Any, fn: Callable[[], T], *, expires: float = 3600,
            in_progress_timeout: float = DEFAULT_IN_PROGRESS_TIMEOUT,
            attempt: Attempt | None = None) -> T:
        """``fn()`` once per ``key`` within ``expires`` seconds; its stored result
        after that. Raises :class:`IdempotencyKeyMismatch` if ``key`` was used
        with another ``payload``, :class:`IdempotencyInProgress` while another
        run with ``key`` is live. ``attempt`` names this run, so that another
        attempt of the same invocation takes over the record it leaves."""
        begun = self._begin(key, payload, expires, in_progress_timeout, attempt)
        if begun.owned is None:
            return begun.result
        try:
            result = fn()
        except BaseException:
            self.store.delete(key, expected=begun.owned)
            raise
        return self._complete(begun.owned, result)

    async def run_async(self, key: str, payload: Any, fn: Callable[[], Awaitable[T]], *,
                        expires: float = 3600,
                        in_progress_timeout: float = DEFAULT_IN_PROGRESS_TIMEOUT,
                        attempt: Attempt | None = None) -> T:
        """:meth:`run` for a coroutine function."""
        begun = self._begin(key, payload, expires, in_progress_timeout, attempt)
        if begun.owned is None:
            return begun.result
        try:
            result = await fn()
        except BaseException:
            self.store.delete(key, expected=begun.owned)
            raise
        return self._complete(begun.owned, result)

    def _begin(self, key: str, payload: Any, expires: float, in_progress_timeout: float,
               attempt: Attempt | None) -> _Begun:
        digest = payload_hash(payload)
        now = self.clock()
        record = IdempotencyRecord(key, "in_progress", digest, now + expires,
                                   now + in_progress_timeout,
                                   invocation=attempt.invocation if attempt else None,
                                   attempt=attempt.token if attempt else None)
        for _ in range(5):
            owned = self.store.put_if_absent(record)
            if owned is not None:
                return _Begun(owned)
            existing = self.store.get(key)
            if existing is None:
                continue  # its run failed and released it just now: try again
            if existing.expires_at <= now or (existing.status == "in_progress" and (
                    (existing.in_progress_expiry or 0) <= now or _abandoned(existing, attempt))):
                owned = self.store.update(record, expected=existing)  # stale: take it over
                if owned is not None:
                    return _Begun(owned)
                continue
            if existing.payload_hash != digest:
                raise IdempotencyKeyMismatch(
                    f"idempotency key {key!r} was already used with a different payload",
                    key=key)
            if existing.status == "completed":
                return _Begun(None, existing.result)
            raise IdempotencyInProgress(f"a run with idempotency key {key!r} is in progress; "
                                        "retry later", key=key)
        raise IdempotencyInProgress(f"idempotency key {key!r} is contended; retry later",
                                    key=key)

    def _complete(self, owned: IdempotencyRecord, result: T) -> T:
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError):
            self.store.delete(owned.key, expected=owned)
            raise IdempotencyError(
                f"the result of idempotent run {owned.key!r} is not a JSON value, so it "
                "cannot be replayed; return JSON data", code="idempotency_result_not_json",
                key=owned.key) from None
        done = replace(owned, status="completed", result=result, in_progress_expiry=None,
                       invocation=None, attempt=None)
        if self.store.update(done, expected=owned) is None:
            log.warning("idempotency record %s was taken over before the run completed "
                        "(it outlived its in-progress timeout)", owned.key)
        return result


def _abandoned(existing: IdempotencyRecord, attempt: Attempt | None) -> bool:
    """Whether ``existing`` was left by an earlier attempt of ``attempt``'s own invocation
    (which the platform has ended before delivering this one; see the module docstring)."""
    return (attempt is not None and existing.invocation == attempt.invocation
            and existing.attempt is not None and existing.attempt != attempt.token)


# One token per process: an instance forked from a zygote gets its own. A later attempt of
# an invocation in the same process cannot find its earlier one in progress (a run that
# raises deletes its record; a timeout or crash ends the process), so the same token means
# "possibly this very attempt, re-entered" and is never taken over.
_process_token = uuid.uuid4().hex


def _new_process_token() -> None:
    global _process_token
    _process_token = uuid.uuid4().hex


os.register_at_fork(after_in_child=_new_process_token)


def current_attempt(context: Any = None) -> Attempt | None:
    """The attempt running now: the invocation the platform is running in this
    instance (else the context's ``aws_request_id``) in this process; None when
    nothing names the invocation (e.g. in a thread the handler started)."""
    invocation = _instance_request_id() or getattr(context, "aws_request_id", None)
    if not invocation or not isinstance(invocation, str):
        return None
    return Attempt(invocation, _process_token)


def _instance_request_id() -> str:
    # the worker is loaded only inside an instance, where it sets the id of the message it
    # is running (a context variable, so async instances running several keep them apart)
    worker = sys.modules.get("skiff.instance.worker")
    current = getattr(worker, "_request_id", None)
    return current.get() if current is not None else ""


def payload_hash(payload: Any) -> str:
    """A stable digest of a JSON-like payload (key order does not matter)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# -- the decorator -------------------------------------------------------------------
_default_store: IdempotencyStore | None = None
_default_lock = threading.Lock()


def set_default_store(store: IdempotencyStore | None) -> None:
    """The store ``@idempotent`` uses when given none (the platform sets a KV-backed
    one in each instance; None returns to a process-local memory store)."""
    global _default_store
    with _default_lock:
        _default_store = store


def default_store() -> IdempotencyStore:
    global _default_store
    with _default_lock:
        if _default_store is None:
            _default_store = MemoryIdempotencyStore()
        return _default_store


def idempotent(*, key: Callable[[Any], Any] | None = None,
               payload: Callable[[Any], Any] | None = None, expires: float = 3600,
               store: IdempotencyStore | Callable[[], IdempotencyStore] | None = None,
               clock: Clock = time.time) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a ``handler(event, context)`` (sync or async) idempotent::

        @idempotent(key=lambda event: event["order_id"])
        def handler(event, context):
            charge(event)
            return {"charged": True}

    ``key(event)`` picks the idempotency key (default: the whole event); when
    it returns None the handler runs unprotected, with a warning. The payload
    compared between runs is ``payload(event)`` if given, else the key itself:
    whole events carry per-delivery fields (receipt handles, receive counts,
    request ids) that differ on every retry. The in-progress lease lasts the
    invocation's remaining time when the context tells it; another attempt of
    the same invocation (a redelivery after the instance or the platform died)
    takes a record over at once. ``store`` is a store
    or a function returning one, resolved per call; default
    :func:`default_store`.
    """

    def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
        name = f"{handler.__module__}.{handler.__qualname__}"

        def prepare(event: Any, context: Any) -> tuple[Idempotency, str, Any, float,
                                                       Attempt | None] | None:
            chosen = key(event) if key is not None else event
            if chosen is None:
                log.warning("%s: the idempotency key of this event is None; running it "
                            "without idempotency", name)
                return None
            resolved = store() if callable(store) else store
            engine = Idempotency(resolved or default_store(), clock=clock)
            checked = payload(event) if payload is not None else chosen
            return (engine, f"{name}#{payload_hash(chosen)}", checked, _remaining(context),
                    current_attempt(context))

        if inspect.iscoroutinefunction(handler):
            @functools.wraps(handler)
            async def run_async(event: Any, context: Any = None) -> Any:
                plan = prepare(event, context)
                if plan is None:
                    return await handler(event, context)
                engine, k, checked, lease, attempt = plan
                return await engine.run_async(k, checked, lambda: handler(event, context),
                                              expires=expires, in_progress_timeout=lease,
                                              attempt=attempt)
            return run_async

        @functools.wraps(handler)
        def run(event: Any, context: Any = None) -> Any:
            plan = prepare(event, context)
            if plan is None:
                return handler(event, context)
            engine, k, checked, lease, attempt = plan
            return engine.run(k, checked, lambda: handler(event, context), expires=expires,
                              in_progress_timeout=lease, attempt=attempt)
        return run

    return decorate


def _remaining(context: Any) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        try:
            millis = float(remaining())
        except (TypeError, ValueError):
            millis = 0.0
        if millis > 0:
            return millis / 1000.0
    return DEFAULT_IN_PROGRESS_TIMEOUT
