"""Storage interfaces and their backends, chosen by URL (:mod:`skiff.storage`:
``open_storage(SKIFF_DATABASE_URL) -> Storage``).

One small interface per family, each kept by a SQLite backend (the embedded
default under $SKIFF_HOME) and a PostgreSQL one (the shared engine of several
nodes, ``pip install 'skiff[postgres]'``), with one contract suite per
interface under tests/:

- :class:`Registry`: apps, revisions, uids, route grants, code bundles
- :class:`InvocationLog`: invocation records, stats, logs with retention
- :class:`TriggerState`: async invocation status, schedule checkpoints
- :class:`WorkflowHistory`: state machines, executions and their append-only histories
- :class:`KV`: the apps' key-value store (idempotency records live in it)
- the encrypted rows under the secret store: :class:`skiff.governance.secret_rows.SecretRows`
  (it lives with the encryption above it: governance imports nothing of store)
- the broker: :class:`skiff.bus.Broker`

:mod:`skiff.store.migrations` numbers the shared schema (``skiff migrate``).
"""

from skiff.store.kv import KV, ConditionFailed, InvalidItem, Item, MemoryKV, NamespacedKV, Page
from skiff.store.kv_sqlite import SQLiteKV
from skiff.store.records import Invocation, InvocationLog, LogRetention
from skiff.store.registry import Registry, RevisionRow
from skiff.store.sqlite import Store
from skiff.store.trigger_state import TriggerState
from skiff.store.workflow_history import WorkflowHistory

__all__ = ["KV", "ConditionFailed", "InvalidItem", "Invocation", "InvocationLog", "Item",
           "LogRetention", "MemoryKV", "NamespacedKV", "Page", "Registry", "RevisionRow",
           "SQLiteKV", "Store", "TriggerState", "WorkflowHistory"]
