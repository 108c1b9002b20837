import sys
from pathlib import Path

import pytest

from skiff.instance.protocol import HttpRequest
from skiff.runtime import InvokeContext

APPS = Path(__file__).parent / "apps"
GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def isolated_imports():
    """Undo what load_app does to sys.path and sys.modules."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def make_request(**overrides) -> HttpRequest:
    fields = {"id": "req-1", "method": "GET", "path": "/", "host": "example.test",
              "client": "203.0.113.9"}
    fields.update(overrides)
    return HttpRequest(**fields)


def make_context(**overrides) -> InvokeContext:
    fields = {"request_id": "req-1", "app": "demo", "revision": "r1", "memory_mb": 128,
              "deadline_ms": 0.0}
    fields.update(overrides)
    return InvokeContext(**fields)
