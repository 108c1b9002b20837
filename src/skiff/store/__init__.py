"""Storage backends. The embedded default is one SQLite file."""

from skiff.store.sqlite import Invocation, RevisionRow, Store

__all__ = ["Invocation", "RevisionRow", "Store"]
