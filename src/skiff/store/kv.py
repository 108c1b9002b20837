"""The key-value store apps get through ``skiff.sdk``: small JSON documents,
namespaced per app, with versions for optimistic locking, TTLs and atomic
counters.

Every operation takes the namespace (the app's name) first, and the platform,
not the app, supplies it: an app holds a :class:`NamespacedKV` bound to its own
namespace and has no way to name another's keys.

The logic lives here once (Powertools style): validation, TTL expiry (an
expired item is invisible at once and purged lazily when met, or in bulk by
:meth:`KV.purge_expired`), version numbers, conditions, pagination and
counters. A backend implements six primitives and one guarantee: everything
inside :meth:`KV._atomic` runs as one serializable transaction.

Errors::

    SkiffError
    ├── ConditionFailed   409 condition_failed   if_absent / if_version did not hold
    └── InvalidItem       400 invalid_item       bad namespace, key, value, ttl, limit
                          400 invalid_cursor     a cursor this store did not issue
                          409 not_an_integer     incr on a value that is not an integer
"""

from __future__ import annotations

import abc
import base64
import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from skiff.errors import SkiffError

Clock = Callable[[], float]

#: DynamoDB's item limit: big enough for any app document, small enough that
#: nobody mistakes the KV for blob storage.
MAX_VALUE_BYTES = 400 * 1024
MAX_KEY_LENGTH = 1024
MAX_PAGE = 1000


class ConditionFailed(SkiffError):
    status = 409
    code = "condition_failed"


class InvalidItem(SkiffError):
    status = 400
    code = "invalid_item"


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    value: Any
    version: int
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Item]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class StoredItem:
    """An item as a backend keeps it: the value as JSON text."""

    key: str
    data: str
    version: int
    expires_at: float | None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class KV(abc.ABC):
    """Abstract namespaced KV store; thread-safe. See the module docstring."""

    def __init__(self, *, clock: Clock = time.time,
                 max_value_bytes: int = MAX_VALUE_BYTES) -> None:
        self.clock = clock
        self.max_value_bytes = max_value_bytes

    # -- public API ----------------------------------------------------------------
    def get(self, ns: str, key: str) -> Item | None:
        """The live item at ``key``, or None (expired items are gone)."""
        _check_name("namespace", ns, 200)
        _check_name("key", key, MAX_KEY_LENGTH)
        stored = self._read(ns, key)
        if stored is None:
            return None
        if stored.expired(self.clock()):
            self._remove(ns, key, stored.version)
            return None
        return _item(stored)

    def put(self, ns: str, key: str, value: Any, *, ttl: float | None = None,
            if_absent: bool = False, if_version: int | None = None) -> Item:
        """Store ``value`` (any JSON value) and return the new item.

        ``ttl`` (seconds) makes it expire; ``if_absent`` writes only if no live
        item exists; ``if_version`` only if the live item has that version.
        A failed condition raises :class:`ConditionFailed`. Versions start at
        1 and grow by one per write of the key.
        """
        _check_name("namespace", ns, 200)
        _check_name("key", key, MAX_KEY_LENGTH)
        data = self._encode(value)
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)
                                or not math.isfinite(ttl) or ttl <= 0):
            raise InvalidItem(f"ttl must be a positive number of seconds, got {ttl!r}")
        _check_version(if_version)
        with self._atomic():
            now = self.clock()
            stored = self._read(ns, key)
            live = stored if stored is not None and not stored.expired(now) else None
            if if_absent and live is not None:
                raise ConditionFailed(f"key {key!r} already exists", key=key,
                                      version=live.version)
            if if_version is not None and (live is None or live.version != if_version):
                raise ConditionFailed(
                    f"key {key!r} is not at version {if_version}", key=key,
                    version=None if live is None else live.version)
            new = StoredItem(key, data, 1 if stored is None else stored.version + 1,
                             None if ttl is None else now + ttl)
            self._write(ns, new)
        return Item(key, json.loads(data), new.version, new.expires_at)

    def delete(self, ns: str, key: str, *, if_version: int | None = None) -> bool:
        """Delete ``key``; False if there was no live item. With ``if_version``,
        a missing item or another version raises :class:`ConditionFailed`."""
        _check_name("namespace", ns, 200)
        _check_name("key", key, MAX_KEY_LENGTH)
        _check_version(if_version)
        with self._atomic():
            stored = self._read(ns, key)
            live = stored if stored is not None and not stored.expired(self.clock()) else None
            if if_version is not None and (live is None or live.version != if_version):
                raise ConditionFailed(f"key {key!r} is not at version {if_version}", key=key,
                                      version=None if live is None else live.version)
            if stored is not None:
                self._remove(ns, key, None)
        return live is not None

    def query(self, ns: str, prefix: str = "", *, limit: int = 100,
              cursor: str | None = None) -> Page:
        """Live items whose key starts with ``prefix``, in key order, ``limit`` at
        a time; pass ``next_cursor`` back for the next page."""
        _check_name("namespace", ns, 200)
        if not isinstance(prefix, str):
            raise InvalidItem(f"prefix must be a string, got {type(prefix).__name__}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidItem(f"limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}")
        after = None if cursor is None else _decode_cursor(cursor)
        end = _prefix_end(prefix)
        now = self.clock()
        live: list[StoredItem] = []
        expired: list[StoredItem] = []
        while len(live) <= limit:
            want = max(limit + 1 - len(live), 32)
            batch = self._scan(ns, prefix, end, after, want)
            for stored in batch:
                (expired if stored.expired(now) else live).append(stored)
            if len(batch) < want:
                break
            after = batch[-1].key
        for stored in expired:
            self._remove(ns, stored.key, stored.version)
        more = len(live) > limit
        items = [_item(s) for s in live[:limit]]
        return Page(items, _encode_cursor(items[-1].key) if more else None)

    def incr(self, ns: str, key: str, by: int = 1) -> int:
        """Add ``by`` to the integer at ``key`` (0 if absent) atomically; return it.
        The item keeps its TTL."""
        _check_name("namespace", ns, 200)
        _check_name("key", key, MAX_KEY_LENGTH)
        if isinstance(by, bool) or not isinstance(by, int):
            raise InvalidItem(f"incr takes an integer step, got {by!r}")
        with self._atomic():
            stored = self._read(ns, key)
            live = stored if stored is not None and not stored.expired(self.clock()) else None
            current = 0 if live is None else json.loads(live.data)
            if isinstance(current, bool) or not isinstance(current, int):
                raise InvalidItem(f"key {key!r} holds {type(current).__name__}, not an integer",
                                  code="not_an_integer", status=409, key=key)
            value = current + by
            self._write(ns, StoredItem(key, json.dumps(value),
                                       1 if stored is None else stored.version + 1,
                                       None if live is None else live.expires_at))
        return value

    def purge_expired(self, ns: str | None = None) -> int:
        """Delete expired items (of one namespace, or all); return how many."""
        if ns is not None:
            _check_name("namespace", ns, 200)
        return self._remove_expired(ns, self.clock())

    def clear(self, ns: str) -> int:
        """Delete every item of a namespace (an app being deleted); return how many."""
        _check_name("namespace", ns, 200)
        return self._clear(ns)

    def scoped(self, ns: str) -> NamespacedKV:
        """This store seen by one app: every call is confined to namespace ``ns``."""
        _check_name("namespace", ns, 200)
        return NamespacedKV(self, ns)

    def close(self) -> None:  # noqa: B027 - a backend without resources needs nothing
        """Release the backend's resources."""

    # -- primitives a backend implements -------------------------------------------
    @abc.abstractmethod
    def _atomic(self) -> contextlib.AbstractContextManager[None]:
        """A context in which the primitives below run as one serializable
        transaction (across threads, and processes if the backend is shared)."""

    @abc.abstractmethod
    def _read(self, ns: str, key: str) -> StoredItem | None:
        """The stored item, expired or not."""

    @abc.abstractmethod
    def _write(self, ns: str, item: StoredItem) -> None:
        """Insert or replace."""

    @abc.abstractmethod
    def _remove(self, ns: str, key: str, version: int | None) -> bool:
        """Delete the key, only at ``version`` unless it is None."""

    @abc.abstractmethod
    def _scan(self, ns: str, start: str, end: str | None, after: str | None,
              limit: int) -> list[StoredItem]:
        """Up to ``limit`` items with ``start <= key < end`` (no end if None) and
        ``key > after`` (if given), in key (code point) order, expired or not."""

    @abc.abstractmethod
    def _remove_expired(self, ns: str | None, now: float) -> int: ...

    @abc.abstractmethod
    def _clear(self, ns: str) -> int: ...

    # -- helpers -------------------------------------------------------------------
    def _encode(self, value: Any) -> str:
        try:
            data = json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidItem(f"value is not JSON-serializable: {exc}") from None
        size = len(data.encode("utf-8", "surrogatepass"))
        if size > self.max_value_bytes:
            raise InvalidItem(f"value of {size} bytes is over the {self.max_value_bytes}-byte "
                              "limit", code="value_too_large", status=413)
        return data


class NamespacedKV:
    """One app's view of a :class:`KV`: the same operations without ``ns``."""

    def __init__(self, kv: KV, namespace: str) -> None:
        self._kv = kv
        self.namespace = namespace

    def get(self, key: str) -> Item | None:
        return self._kv.get(self.namespace, key)

    def put(self, key: str, value: Any, *, ttl: float | None = None, if_absent: bool = False,
            if_version: int | None = None) -> Item:
        return self._kv.put(self.namespace, key, value, ttl=ttl, if_absent=if_absent,
                            if_version=if_version)

    def delete(self, key: str, *, if_version: int | None = None) -> bool:
        return self._kv.delete(self.namespace, key, if_version=if_version)

    def query(self, prefix: str = "", *, limit: int = 100, cursor: str | None = None) -> Page:
        return self._kv.query(self.namespace, prefix, limit=limit, cursor=cursor)

    def incr(self, key: str, by: int = 1) -> int:
        return self._kv.incr(self.namespace, key, by)


class MemoryKV(KV):
    """Everything in a dict; for tests and ``skiff dev``."""

    def __init__(self, *, clock: Clock = time.time,
                 max_value_bytes: int = MAX_VALUE_BYTES) -> None:
        super().__init__(clock=clock, max_value_bytes=max_value_bytes)
        self._lock = threading.RLock()
        self._data: dict[str, dict[str, StoredItem]] = {}

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        with self._lock:
            yield

    def _read(self, ns: str, key: str) -> StoredItem | None:
        with self._lock:
            return self._data.get(ns, {}).get(key)

    def _write(self, ns: str, item: StoredItem) -> None:
        with self._lock:
            self._data.setdefault(ns, {})[item.key] = item

    def _remove(self, ns: str, key: str, version: int | None) -> bool:
        with self._lock:
            items = self._data.get(ns, {})
            stored = items.get(key)
            if stored is None or (version is not None and stored.version != version):
                return False
            del items[key]
            return True

    def _scan(self, ns: str, start: str, end: str | None, after: str | None,
              limit: int) -> list[StoredItem]:
        with self._lock:
            keys = sorted(k for k in self._data.get(ns, {})
                          if k >= start and (end is None or k < end)
                          and (after is None or k > after))
            return [self._data[ns][k] for k in keys[:limit]]

    def _remove_expired(self, ns: str | None, now: float) -> int:
        with self._lock:
            removed = 0
            for name in [ns] if ns is not None else list(self._data):
                items = self._data.get(name, {})
                for key in [k for k, v in items.items() if v.expired(now)]:
                    del items[key]
                    removed += 1
            return removed

    def _clear(self, ns: str) -> int:
        with self._lock:
            return len(self._data.pop(ns, {}))


def _item(stored: StoredItem) -> Item:
    return Item(stored.key, json.loads(stored.data), stored.version, stored.expires_at)


def _check_name(what: str, value: Any, max_length: int) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise InvalidItem(f"{what} must be a string of 1 to {max_length} characters, "
                          f"got {value!r}")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidItem(f"{what} {value!r} is not valid Unicode text") from None


def _check_version(version: int | None) -> None:
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                or version < 1):
        raise InvalidItem(f"if_version must be a positive integer, got {version!r}")


def _prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix``."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code <= 0x10FFFF:
            chars[-1] = chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)
            return "".join(chars)
        chars.pop()
    return None


def _encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": key}).encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        after = json.loads(base64.urlsafe_b64decode(cursor.encode()))["after"]
        if isinstance(after, str):
            return after
    except (ValueError, TypeError, KeyError, AttributeError):
        pass
    raise InvalidItem(f"not a cursor of this store: {cursor!r}", code="invalid_cursor")
