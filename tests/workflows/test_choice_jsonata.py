"""Choice operators the AWS cases do not reach (StringMatches, IsTimestamp, nesting), and
the JSONata functions AWS adds to the language."""

from __future__ import annotations

import random

import pytest

from skiff.workflows import StatesError, choice, paths
from skiff.workflows.jsonata import Evaluator

SCOPE = paths.Scope({}, {"limit": 10})


@pytest.mark.parametrize(("rule", "value", "want"), [
    ({"Variable": "$.f", "StringMatches": "log-*.txt"}, {"f": "log-2024.txt"}, True),
    ({"Variable": "$.f", "StringMatches": "log-*.txt"}, {"f": "log.txt"}, False),
    ({"Variable": "$.f", "StringMatches": "a\\*b"}, {"f": "a*b"}, True),
    ({"Variable": "$.f", "StringMatches": "a\\*b"}, {"f": "axb"}, False),
    ({"Variable": "$.t", "IsTimestamp": True}, {"t": "2024-01-01T00:00:00.123456789+02:00"},
     True),
    ({"Variable": "$.t", "IsTimestamp": True}, {"t": "2024-01-01 00:00:00Z"}, False),
    ({"Variable": "$.t", "TimestampLessThan": "2024-01-01T00:00:00Z"},
     {"t": "2024-01-01T01:00:00+02:00"}, True),
    ({"Variable": "$.n", "NumericLessThanPath": "$limit"}, {"n": 3}, True),
    ({"Variable": "$.n", "NumericEquals": 1}, {"n": True}, False),  # a boolean is no number
    ({"Or": [{"Variable": "$.a", "IsNull": True},
             {"And": [{"Variable": "$.b", "IsPresent": True},
                      {"Not": {"Variable": "$.b", "StringEquals": "x"}}]}]},
     {"a": 1, "b": "y"}, True),
])
def test_rules(rule: dict, value: dict, want: bool) -> None:
    assert choice.evaluate(rule, value, SCOPE) is want


def test_a_missing_variable_fails_except_under_is_present() -> None:
    assert choice.evaluate({"Variable": "$.gone", "IsPresent": False}, {}, SCOPE) is True
    with pytest.raises(StatesError) as info:
        choice.evaluate({"Variable": "$.gone", "NumericEquals": 1}, {}, SCOPE)
    assert info.value.error == "States.Runtime"


EV = Evaluator(random.Random(3), 1_700_000_000_000)


def ev(expr: str, input: object = None, variables: dict | None = None) -> object:
    return EV.evaluate(expr, {"input": input}, variables or {}, field="Output", state="S")


@pytest.mark.parametrize(("expr", "want"), [
    ("$partition([1,2,3,4,5], 2)", [[1, 2], [3, 4], [5]]),
    ("$range(0, 10, 5)", [0, 5, 10]),
    ("$range(1, 1, 1)", 1),  # a one-item range is the item, as AWS answers
    ("$hash('abc', 'SHA-256')",
     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    ("$parse('{\"a\": [1, null]}')", {"a": [1, None]}),
    ("$millis()", 1_700_000_000_000),
    ("$now()", "2023-11-14T22:13:20.000Z"),
    ("$states.input.x", 5),
    ("$v + 1", 2),
])
def test_aws_functions(expr: str, want: object) -> None:
    assert ev(expr, {"x": 5}, {"v": 1}) == want


def test_random_and_uuid_come_from_the_seeded_source() -> None:
    a = Evaluator(random.Random(9), 0).evaluate("[$random(), $uuid()]", {"input": None}, {},
                                                field="Output", state="S")
    b = Evaluator(random.Random(9), 0).evaluate("[$random(), $uuid()]", {"input": None}, {},
                                                field="Output", state="S")
    assert a == b and 0 <= a[0] < 1 and len(a[1]) == 36


def test_null_is_a_value_and_undefined_an_error() -> None:
    assert ev("$states.input.x", {"x": None}) is None
    with pytest.raises(StatesError) as info:
        ev("$states.input.nothing", {})
    assert info.value.error == "States.QueryEvaluationError"
    assert "returned nothing (undefined)" in info.value.cause


def test_a_failing_expression_is_a_query_evaluation_error() -> None:
    with pytest.raises(StatesError) as info:
        ev("$nosuchfunction(1)")
    assert info.value.error == "States.QueryEvaluationError"


def test_templates_evaluate_only_whole_expression_strings() -> None:
    out = EV.template({"a": "{% 1 + 1 %}", "b": "text {% 1 %}", "c": ["{% 'x' %}"]},
                      {"input": {}}, {}, field="Output", state="S")
    assert out == {"a": 2, "b": "text {% 1 %}", "c": ["x"]}


def test_a_runaway_expression_is_stopped_by_a_step_budget(monkeypatch) -> None:
    from skiff.workflows import jsonata as jsonata_module

    monkeypatch.setattr(jsonata_module, "MAX_STEPS", 5_000)
    with pytest.raises(StatesError) as info:
        ev("($f := function($n){ $f($n + 1) }; $f(0))")
    assert info.value.error == "States.QueryEvaluationError"
    assert "evaluation steps" in info.value.cause
    assert ev("$sum([1..100])") == 5050  # an ordinary expression stays well inside
