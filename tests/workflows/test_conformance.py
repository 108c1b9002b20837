"""Every ASL conformance case recorded against AWS runs here, compared as the cases'
README says. A case listed in known_failures.txt is xfail(strict): fixing it fails the
run until the line is removed."""

from __future__ import annotations

import io

import pytest

from tests.workflows import conformance

if not conformance.available():
    pytest.skip(f"the ASL conformance cases are not at {conformance.CASES_DIR}",
                allow_module_level=True)

KNOWN = conformance.known_failures()
NAMES = [e["name"] for e in conformance.index()]


def _param(name: str):
    if name in KNOWN:
        return pytest.param(name, marks=pytest.mark.xfail(reason=KNOWN[name], strict=True))
    return name


@pytest.mark.parametrize("name", [_param(n) for n in NAMES])
def test_case(name: str) -> None:
    problems = conformance.run_case(conformance.load(name))
    assert not problems, "\n".join(problems)


def test_known_failures_name_real_cases() -> None:
    """A stale line in known_failures.txt (a renamed or removed case) is an error."""
    assert set(KNOWN) <= set(NAMES), sorted(set(KNOWN) - set(NAMES))


def test_pass_rate_table_counts_every_case() -> None:
    """The per-feature table (``python -m tests.workflows.conformance``) covers the cases."""
    out = io.StringIO()
    table = conformance.report(out=out)
    assert "| **all** |" in out.getvalue()
    assert table["choice"][1] >= 190 and table["jsonata"][1] >= 100


def test_the_pure_step_replays_every_case_to_the_same_history() -> None:
    """Driving each case through ``step(machine, history, event)``, which rebuilds the
    execution from its history on every event (as after a restart), records exactly the
    history and commands the in-memory Execution does."""
    from skiff.workflows import local, parse

    differ = []
    for name in NAMES:
        case = conformance.load(name)
        if case.get("kind") == "validate":
            continue
        machine = parse(case["definition"])
        live = local.run(machine, case["input"], tasks=conformance.task_table())
        replayed = local.run(machine, case["input"], tasks=conformance.task_table(),
                             replay=True)
        if live.history != replayed.history or live.commands != replayed.commands:
            differ.append(name)
    assert not differ
