"""Storage backends. The embedded default is SQLite files under $SKIFF_HOME:
the registry and records (``Store``) and the apps' key-value store (``KV``)."""

from skiff.store.kv import KV, ConditionFailed, InvalidItem, Item, MemoryKV, NamespacedKV, Page
from skiff.store.kv_sqlite import SQLiteKV
from skiff.store.sqlite import Invocation, LogRetention, RevisionRow, Store

__all__ = ["KV", "ConditionFailed", "InvalidItem", "Invocation", "Item", "LogRetention",
           "MemoryKV", "NamespacedKV", "Page", "RevisionRow", "SQLiteKV", "Store"]
