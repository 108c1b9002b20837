"""The package layering of DESIGN.md holds: every module imports on its own, and
no import points back up the data flow."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import skiff

SRC = Path(skiff.__file__).parent

# What each part of skiff may import (besides itself). Dependencies point down the
# data flow: the gateway may use the scheduler, never the reverse; nothing imports
# cli, dashboard or the composition root (server) but the CLI that runs it (and the
# composition root, which mounts the dashboard beside the admin API).
LEAVES = {"errors", "config", "logtext", "ipc", "edge", "notify"}
ALLOWED: dict[str, set[str]] = {
    "__main__": {"cli"},
    # bus, runtime, ipc: `skiff event generate` builds sample events with the code that
    # builds them for a deployed app (skiff.cli.events), so a sample is what the app
    # receives; testing: `skiff invoke --local` runs the app in-process (skiff.testing)
    "cli": {"server", "storage", "observe", "config", "errors", "governance", "instance", "logtext",
            "manifest", "bus", "runtime", "ipc", "testing"},
    "server": {"dashboard", "platform", "gateway", "triggers", "bus", "store", "sdk", "instance",
               "governance", "egress", "edge", "serverlock", "storage", "observe", "config",
               "errors", "manifest", "notify"},
    "serverlock": {"errors"},
    "platform": {"gateway", "triggers", "scheduler", "instance", "egress", "governance",
                 "manifest", "bus", "store", "storage", "sdk", "observe", "config", "errors",
                 "logtext", "ipc", "workflows"},
    "storage": {"bus", "store", "governance", "errors"},  # the URL factory of every backend
    # the admin API authenticates callers and checks their roles (governance.identity);
    # the Step Functions route validates definitions
    "gateway": {"scheduler", "manifest", "bus", "governance", "observe", "config", "errors",
                "ipc", "workflows"},
    # fed by the platform and the gateway through after_* calls; imports neither
    # ... and notifies people through the one notifier (the leaf skiff.notify)
    "observe": {"store", "logtext", "errors", "notify"},
    "triggers": {"scheduler", "instance", "bus", "manifest", "store", "errors", "ipc"},
    "scheduler": {"instance", "errors", "ipc"},
    "instance": {"runtime", "ipc", "errors"},  # the worker hosts the runtime, in the instance
    "runtime": {"ipc", "errors"},
    "sdk": {"instance", "store", "errors"},  # its client talks through the worker's channel
    "testing": {"runtime", "sdk", "bus", "store", "manifest", "ipc", "errors"},
    "manifest": {"bus", "errors"},  # schedules and patterns are validated by the bus's parsers
    "egress": {"errors"},
    # the operator UI: pages over the admin API, which it calls in-process (no other part)
    "dashboard": {"errors"},
    "workflows": {"errors"},  # the ASL core is pure: the executor wiring lives above it
    # deploy -> manifest -> governance: policies read the normalized manifest
    "governance": {"manifest", "errors", "notify"},
    "bus": {"store", "errors"},
    "store": {"errors", "notify"},  # alert rows keep an outbox of skiff.notify's rows
    **{leaf: set() for leaf in LEAVES},
}
NEVER_IMPORTED = {"cli", "dashboard", "server"}
MAY_IMPORT = {("cli", "server"), ("server", "dashboard")}  # who runs them


def modules() -> list[str]:
    out = []
    for f in sorted(SRC.rglob("*.py")):
        rel = f.relative_to(SRC.parent).with_suffix("")
        if "templates" in rel.parts:  # app templates for `skiff new`, not skiff's code
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out.append(".".join(parts))
    return out


def part(module: str) -> str:
    return module.split(".")[1] if "." in module else "(skiff)"


def imported(path: Path, module: str) -> set[str]:
    """The skiff modules ``path`` imports (at any depth: lazy imports count too)."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base == "skiff":  # from skiff import ipc: the names are modules
                found.update(f"skiff.{a.name}" for a in node.names)
            else:
                found.add(base)
    return {m for m in found if m.startswith("skiff.")}


@pytest.mark.timeout(900)  # ~200 fresh imports: minutes on a loaded 2-core machine
def test_every_module_imports_on_its_own() -> None:
    """Each module is imported first in a fresh interpreter (one per module would take
    a minute; one interpreter that clears skiff from sys.modules between modules finds
    the same cycles and missing imports)."""
    script = """
import importlib, json, sys, traceback
failed = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "skiff" or m.startswith("skiff.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc(limit=-3)
print(json.dumps(failed))
"""
    names = [m for m in modules() if m not in ("skiff.__main__", "skiff.runtime._host")]
    done = subprocess.run([sys.executable, "-c", script, json.dumps(names)],
                          capture_output=True, text=True, timeout=840)
    assert done.returncode == 0, done.stderr
    failed = json.loads(done.stdout.strip().splitlines()[-1])
    assert not failed, "\n".join(f"{k}:\n{v}" for k, v in failed.items())


def test_imports_follow_the_layering() -> None:
    """No part imports one it may not: the table above is the whole allowed graph."""
    back_edges = []
    for module in modules():
        me = part(module)
        if me == "(skiff)":
            continue
        path = SRC.joinpath(*module.split(".")[1:])
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for other in imported(path, module):
            theirs = part(other)
            if theirs in (me, "(skiff)"):
                continue
            if theirs in NEVER_IMPORTED and (me, theirs) not in MAY_IMPORT \
                    and me != "__main__":
                back_edges.append(f"{module} imports {other}: nothing imports {theirs}")
            elif theirs not in ALLOWED.get(me, set()):
                back_edges.append(f"{module} imports {other} ({me} -> {theirs} is not allowed)")
    assert not back_edges, "\n".join(back_edges)


def test_the_table_has_no_cycles() -> None:
    """The allowed graph itself points one way."""
    seen: dict[str, int] = {}

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, " -> ".join((*path, node))
        if seen.get(node):
            return
        for nxt in ALLOWED.get(node, ()):
            visit(nxt, (*path, node))
        seen[node] = 1

    for node in ALLOWED:
        visit(node, ())
