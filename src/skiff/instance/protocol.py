"""Moved to :mod:`skiff.ipc` (a leaf module both ``instance/`` and ``runtime/``
import); this name stays for code written against it."""

from skiff.ipc import *  # noqa: F403
from skiff.ipc import Headers, Plan  # noqa: F401
