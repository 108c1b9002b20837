"""The ASL conformance cases recorded against AWS (shared/asl-conformance): loading them,
the local task vocabulary of their TASKS.md, and the comparison rules of their README §1.

``python -m tests.workflows.conformance`` prints the pass rate per feature.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

from skiff.workflows import InvalidDefinition, local, parse
from skiff.workflows.local import Sleep, TaskCall, TaskError

# The one place the cases' directory is named (SKIFF_ASL_CONFORMANCE overrides it).
CASES_DIR = Path(os.environ.get(
    "SKIFF_ASL_CONFORMANCE",
    Path(__file__).resolve().parents[3] / "shared" / "asl-conformance"))
if not CASES_DIR.is_dir():  # a worktree sits one level deeper than a clone
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "asl-conformance").is_dir():
            CASES_DIR = parent / "shared" / "asl-conformance"
            break
KNOWN_FAILURES = Path(__file__).with_name("known_failures.txt")


def available() -> bool:
    return (CASES_DIR / "index.json").is_file()


def index() -> list[dict]:
    return json.loads((CASES_DIR / "index.json").read_text())


def load(name: str) -> dict:
    return json.loads((CASES_DIR / "cases" / f"{name}.json").read_text())


def known_failures() -> dict[str, str]:
    out = {}
    if KNOWN_FAILURES.is_file():
        for line in KNOWN_FAILURES.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, reason = line.partition(" ")
                out[name] = reason.strip() or "no reason given"
    return out


def task_table() -> dict[str, Any]:
    """TASKS.md's vocabulary; counters are per execution and per state (a fresh table
    for every run)."""
    attempts: collections.Counter = collections.Counter()

    def echo(value: Any, call: TaskCall) -> Any:
        return value

    def fail(value: Any, call: TaskCall) -> Any:
        raise TaskError(call.resource.split(":", 2)[2], "boom")

    def add(value: Any, call: TaskCall) -> Any:
        return value["a"] + value["b"]

    def flaky(value: Any, call: TaskCall) -> Any:
        attempts[call.state] += 1
        if attempts[call.state] <= int(call.resource.split(":", 2)[2]):
            raise TaskError("States.TaskFailed", "boom")
        return value

    def fail_seq(value: Any, call: TaskCall) -> Any:
        attempts[call.state] += 1
        seq = call.resource.split(":", 2)[2].split(",")
        if attempts[call.state] <= len(seq):
            raise TaskError(seq[attempts[call.state] - 1], "boom")
        return value

    def sleep(value: Any, call: TaskCall) -> Any:
        return Sleep(float(call.resource.split(":", 2)[2]), value)

    return {"task:echo": echo, "task:fail:": fail, "task:add": add, "task:flaky:": flaky,
            "task:fail-seq:": fail_seq, "task:sleep:": sleep}


# -- comparison --------------------------------------------------------------------------

def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: key order is free, 1 == 1.0, but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\['([^']*)'\]")


def _steps(path: str) -> list[str | int]:
    assert path.startswith("$"), path
    out: list[str | int] = []
    for m in _STEP.finditer(path[1:]):
        out.append(int(m.group(2)) if m.group(2) is not None else (m.group(1) or m.group(3)))
    return out


def _get(value: Any, steps: list[str | int]) -> tuple[bool, Any]:
    for s in steps:
        if isinstance(s, int) and isinstance(value, list) and s < len(value) or isinstance(s, str) and isinstance(value, dict) and s in value:
            value = value[s]
        else:
            return False, None
    return True, value


def _drop(value: Any, steps: list[str | int]) -> Any:
    if not steps:
        return None
    if isinstance(value, dict) and steps[0] in value:
        value = dict(value)
        if len(steps) == 1:
            del value[steps[0]]
        else:
            value[steps[0]] = _drop(value[steps[0]], steps[1:])
    elif isinstance(value, list) and isinstance(steps[0], int) and steps[0] < len(value):
        value = list(value)
        if len(steps) == 1:
            value[steps[0]] = None
        else:
            value[steps[0]] = _drop(value[steps[0]], steps[1:])
    return value


_TYPES = {"string": str, "number": (int, float), "boolean": bool, "object": dict,
          "array": list, "null": type(None)}


def _type_ok(value: Any, name: str) -> bool:
    if name == "number" and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[name])


def _patterned(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict) and set(expected) == {"$type", "$pattern"}:
        return _type_ok(actual, expected["$type"]) and \
            re.search(expected["$pattern"], str(actual)) is not None
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and \
            all(_patterned(expected[k], actual[k]) for k in expected)
    return json_equal(expected, actual)


def assigned_variables(history: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for ev in history:
        if ev["type"].endswith("StateExited") and ev["name"] not in out and \
                "assignedVariables" in ev:
            out[ev["name"]] = ev["assignedVariables"]
    return out


def run_case(case: dict) -> list[str]:
    """The ways the engine's result differs from what AWS recorded ([] when it matches)."""
    exp = case["expected"]
    if case.get("kind") == "validate":
        try:
            parse(case["definition"])
            got = "VALID"
        except InvalidDefinition:
            got = "INVALID_DEFINITION"
        return [] if got == exp["status"] else [f"validation: {got}, AWS {exp['status']}"]
    try:
        machine = parse(case["definition"])
    except InvalidDefinition as e:
        return [f"definition refused: {e.message}"]
    result = local.run(machine, case["input"], tasks=task_table(),
                       state_machine_name=case["name"])
    problems = []
    if result.status != exp["status"]:
        problems.append(f"status {result.status} ({result.error}: {result.cause}), "
                        f"AWS {exp['status']}")
        return problems
    if "output" in exp:
        expected, actual = exp["output"], result.output
        for path in exp.get("ignore_output_paths", ()):
            steps = _steps(path)
            found, value = _get(actual, steps)
            if not found:
                problems.append(f"output lacks {path}")
                continue
            if path in exp.get("output_types", {}) and \
                    not _type_ok(value, exp["output_types"][path]):
                problems.append(f"{path} is not a {exp['output_types'][path]}: {value!r}")
            pattern = exp.get("output_patterns", {}).get(path)
            if pattern and not re.search(pattern, str(value)):
                problems.append(f"{path} does not match {pattern}: {value!r}")
            expected, actual = _drop(expected, steps), _drop(actual, steps)
        if not json_equal(expected, actual):
            problems.append(f"output {json.dumps(actual)[:300]}, "
                            f"AWS {json.dumps(expected)[:300]}")
    if exp["status"] != "SUCCEEDED":
        if exp.get("error") != result.error:
            problems.append(f"error {result.error!r}, AWS {exp.get('error')!r}")
        if exp.get("cause_exact") and exp.get("cause") != result.cause:
            problems.append(f"cause {result.cause!r}, AWS {exp.get('cause')!r}")
    if "assigned_variables" in exp:
        got = assigned_variables(result.history)
        omitted_all = exp.get("assigned_variables_omitted", ())
        for state, want in exp["assigned_variables"].items():
            omitted = {o.partition(".")[2] for o in omitted_all if o.startswith(f"{state}.")}
            have = {k: v for k, v in got.get(state, {}).items() if k not in omitted}
            want = {k: v for k, v in want.items() if k not in omitted}
            if not _patterned(want, have):
                problems.append(f"{state} assigned {have}, AWS {want}")
    if "states_entered" in exp:
        entered = [ev["name"] for ev in result.history if ev["type"].endswith("StateEntered")]
        if entered != exp["states_entered"]:
            problems.append(f"entered {entered}, AWS {exp['states_entered']}")
    if "task_attempts" in exp:
        counts = collections.Counter(ev["state"] for ev in result.history
                                     if ev["type"] == "TaskScheduled")
        for state, n in exp["task_attempts"].items():
            if counts[state] != n:
                problems.append(f"{state} ran {counts[state]} times, AWS {n}")
    return problems


_FAMILIES = ("choice:", "intrinsic:", "wait:", "retry:", "legacy:", "error:")


def _families(features: list[str]) -> list[str]:
    """A case's features with operator-level ones folded into their family
    (``choice:NumericEquals`` counts under ``choice``), each once."""
    out: list[str] = []
    for f in features:
        f = f.split(":")[0] if f.startswith(_FAMILIES) else f
        if f not in out:
            out.append(f)
    return out


def report(out: Any = sys.stdout) -> dict[str, tuple[int, int]]:
    """Run every case; print and return the pass rate per feature."""
    per: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    total = [0, 0]
    for entry in index():
        try:
            ok = not run_case(load(entry["name"]))
        except Exception:
            ok = False
        total[0] += ok
        total[1] += 1
        for f in _families(entry["features"]):
            per[f][0] += ok
            per[f][1] += 1
    print("| feature | passed | cases | rate |\n|---|---:|---:|---:|", file=out)
    for f, (p, n) in sorted(per.items(), key=lambda kv: -kv[1][1]):
        print(f"| {f} | {p} | {n} | {100 * p / n:.0f}% |", file=out)
    print(f"| **all** | {total[0]} | {total[1]} | {100 * total[0] / total[1]:.1f}% |",
          file=out)
    return {f: (p, n) for f, (p, n) in per.items()}


if __name__ == "__main__":
    if len(sys.argv) > 1:
        for name in sys.argv[1:]:
            print(name, run_case(load(name)) or "ok")
    else:
        report()
