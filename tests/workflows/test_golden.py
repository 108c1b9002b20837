"""Golden tests of the pure core: each ``golden/<name>.asl.json`` (a definition and an
input) is driven through ``step(machine, history, event)`` alone, with the conformance
task vocabulary and a fake clock; the transcript (each input event and the events and
commands it produced) must equal ``golden/<name>.golden.json``.

After an intended change, ``SKIFF_UPDATE_GOLDEN=1 ./dev test tests/workflows/test_golden.py``
rewrites the files; review the diff like code."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from skiff.workflows import Execution, local, parse
from skiff.workflows.events import EXTERNAL
from tests.workflows.conformance import task_table

GOLDEN = Path(__file__).with_name("golden")
CASES = sorted(p.name.removesuffix(".asl.json") for p in GOLDEN.glob("*.asl.json"))


def transcript(name: str) -> list[dict]:
    """Each input event of the run and what its step produced. The run goes through the
    pure ``step`` (replay=True); re-applying its input events to one live Execution must
    produce the same history, step by step."""
    spec = json.loads((GOLDEN / f"{name}.asl.json").read_text())
    machine = parse(spec["definition"])
    result = local.run(machine, spec["input"], tasks=task_table(), start=0.0, replay=True,
                       execution_id=f"exec:{name}", state_machine_name=name)
    live = Execution(machine)
    steps = []
    for ev in result.history:
        if ev["type"] in EXTERNAL:
            d = live.apply(ev)
            steps.append({"in": ev, "events": d.events[1:],
                          "commands": [{"command": type(c).__name__, **dataclasses.asdict(c)}
                                       for c in d.commands]})
    assert live.history == result.history
    return steps


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    path = GOLDEN / f"{name}.golden.json"
    got = transcript(name)
    if os.environ.get("SKIFF_UPDATE_GOLDEN"):
        path.write_text(json.dumps(got, indent=1) + "\n")
    assert path.is_file(), f"no golden file; run with SKIFF_UPDATE_GOLDEN=1 to write {path}"
    assert got == json.loads(path.read_text())
