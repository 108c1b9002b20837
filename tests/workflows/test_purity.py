"""The interpreter is pure: no module of the core reads a clock, does I/O or draws from
a global random source (time and randomness reach it as events and a seed). The in-memory
driver, local.py, is the one place allowed a loop; it too reads no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import skiff.workflows

PACKAGE = Path(skiff.workflows.__file__).parent
FORBIDDEN_IMPORTS = {"time", "os", "socket", "subprocess", "threading", "asyncio", "select",
                     "io", "pathlib", "sqlite3", "shutil", "tempfile", "secrets"}
FORBIDDEN_CALLS = {"open", "print", "input"}
# datetime.now()/utcnow()/today(), uuid.uuid1()/uuid4(), random.random() and friends
FORBIDDEN_ATTRS = {"now", "utcnow", "today", "uuid1", "uuid4", "urandom", "getrandbits",
                   "random", "randrange", "randint", "choice", "shuffle", "seed"}


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [f"import {a.name}" for a in node.names
                    if a.name.split(".")[0] in FORBIDDEN_IMPORTS]
        elif isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split(".")[0] in FORBIDDEN_IMPORTS:
            out.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in FORBIDDEN_CALLS:
                out.append(f"{f.id}() at line {node.lineno}")
            # module-level functions (random.random(), datetime.now()); a method on an
            # instance (self.rng.random(), rng.getrandbits()) is the seeded source
            if isinstance(f, ast.Attribute) and f.attr in FORBIDDEN_ATTRS and \
                    isinstance(f.value, ast.Name) and f.value.id in {"random", "datetime",
                                                                   "uuid", "os", "time"}:
                out.append(f"{f.value.id}.{f.attr}() at line {node.lineno}")
    return out


def test_the_core_reads_no_clock_does_no_io_and_draws_no_global_randomness() -> None:
    found = {p.name: _offences(p) for p in sorted(PACKAGE.glob("*.py"))}
    assert {k: v for k, v in found.items() if v} == {}
    assert "interpreter.py" in found and "local.py" in found  # the scan saw the package
