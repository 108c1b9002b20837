"""Bad input never crashes the core: the AWS cases' definitions and inputs, mutated at
random (seeded), are either refused with InvalidDefinition or run to an end status;
no other exception escapes. (The same loop at 30,000 mutations found the checks that
validation now makes on field types.)"""

from __future__ import annotations

import random

import pytest

from skiff.workflows import InvalidDefinition, local, parse
from tests.workflows import conformance

if not conformance.available():
    pytest.skip(f"the ASL conformance cases are not at {conformance.CASES_DIR}",
                allow_module_level=True)

VALUES = [None, True, 0, -1, 1.5, "", "$", "$.x", "$$", "{% 1 %}", "States.Array(", [], {},
          [1], {"a": 1}, "xxx"]
MUTATIONS = 600


def _mutate(rng: random.Random, o: object) -> object:
    if isinstance(o, dict) and o:
        o = dict(o)
        k = rng.choice(list(o))
        r = rng.random()
        if r < 0.3:
            o[k] = rng.choice(VALUES)
        elif r < 0.4:
            del o[k]
        else:
            o[k] = _mutate(rng, o[k])
        return o
    if isinstance(o, list) and o:
        o = list(o)
        i = rng.randrange(len(o))
        o[i] = _mutate(rng, o[i]) if rng.random() < 0.7 else rng.choice(VALUES)
        return o
    return rng.choice(VALUES)


def test_mutated_definitions_and_inputs_are_refused_or_run_to_an_end() -> None:
    rng = random.Random(12)
    cases = [conformance.load(e["name"]) for e in conformance.index()]
    ran = refused = 0
    for _ in range(MUTATIONS):
        case = rng.choice(cases)
        definition = case["definition"]
        for _ in range(rng.randint(0, 2)):
            definition = _mutate(rng, definition)
        try:
            machine = parse(definition)
        except InvalidDefinition:
            refused += 1
            continue
        value = case["input"]
        for _ in range(rng.randint(0, 3)):
            value = _mutate(rng, value)
        result = local.run(machine, value, tasks=conformance.task_table())
        assert result.status in ("SUCCEEDED", "FAILED", "TIMED_OUT"), definition
        ran += 1
    assert ran > 100 and refused > 100  # both paths were exercised
