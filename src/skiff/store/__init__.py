"""Storage backends. The embedded default is SQLite files under $SKIFF_HOME:
the registry and records (``Store``) and the apps' key-value store (``KV``)."""

from skiff.store.kv import KV, ConditionFailed, InvalidItem, Item, MemoryKV, NamespacedKV, Page
from skiff.store.kv_sqlite import SQLiteKV
from skiff.store.records import Invocation, InvocationLog, LogRetention
from skiff.store.registry import Registry, RevisionRow
from skiff.store.sqlite import Store

__all__ = ["KV", "ConditionFailed", "InvalidItem", "Invocation", "InvocationLog", "Item",
           "LogRetention", "MemoryKV", "NamespacedKV", "Page", "Registry", "RevisionRow",
           "SQLiteKV", "Store"]
