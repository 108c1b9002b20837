"""JSONPath as ASL uses it: the three roots, definite vs indefinite paths, ResultPath
writes, payload templates and the intrinsic functions' own errors."""

from __future__ import annotations

import random

import pytest

from skiff.workflows import StatesError, intrinsics, paths

SCOPE = paths.Scope({"Execution": {"Id": "e1"}}, {"v": {"k": [10, 20]}})
INTRINSIC = intrinsics.Evaluator(random.Random(0))


@pytest.mark.parametrize(("path", "value", "want"), [
    ("$", {"a": 1}, {"a": 1}),
    ("$.a.b", {"a": {"b": 2}}, 2),
    ("$.items[1]", {"items": [1, 2]}, 2),
    ("$.input-value", {"input-value": 3}, 3),
    ("$$.Execution.Id", None, "e1"),
    ("$v.k[0]", None, 10),
    ("$v", None, {"k": [10, 20]}),
    ("$.items[*].x", {"items": [{"x": 1}, {"y": 2}]}, [1]),
    ("$.items[*]", {}, []),  # AWS: an indefinite path that matches nothing is []
    ("$.users[?(@.age > 30)].n", {"users": [{"age": 40, "n": "a"}, {"age": 20, "n": "b"}]},
     ["a"]),
])
def test_read(path: str, value: object, want: object) -> None:
    assert paths.read(path, value, SCOPE) == want


def test_a_definite_path_that_misses_is_states_runtime() -> None:
    with pytest.raises(StatesError) as info:
        paths.read("$.no.such", {"no": {}}, SCOPE)
    assert info.value.error == "States.Runtime"
    assert info.value.cause.endswith("No results for path: $['no']['such']")
    with pytest.raises(StatesError) as info:
        paths.read("$.no.such.thing", {}, SCOPE)
    assert info.value.cause.endswith("Missing property in path $['no']")
    with pytest.raises(StatesError):
        paths.read("$undefined", {}, SCOPE)


@pytest.mark.parametrize(("path", "target", "want"), [
    ("$", {"a": 1}, "R"),
    (None, {"a": 1}, {"a": 1}),
    ("$.r", {"a": 1}, {"a": 1, "r": "R"}),
    ("$.x.y", {"a": 1}, {"a": 1, "x": {"y": "R"}}),
    ("$.a[1]", {"a": [0, 0]}, {"a": [0, "R"]}),
])
def test_put(path: str | None, target: object, want: object) -> None:
    before = repr(target)
    assert paths.put(path, target, "R") == want
    assert repr(target) == before  # never in place: the history may hold the input


@pytest.mark.parametrize(("path", "target"), [("$.a.b", {"a": 1}), ("$.r", [1]),
                                              ("$.a[5]", {"a": []})])
def test_put_through_a_non_object_is_result_path_match_failure(path: str,
                                                               target: object) -> None:
    with pytest.raises(StatesError) as info:
        paths.put(path, target, 1)
    assert info.value.error == "States.ResultPathMatchFailure"


def test_template_evaluates_dollar_keys_only() -> None:
    tmpl = {"lit": "$.a", "p.$": "$.a", "n": [{"c.$": "$$.Execution.Id"}],
            "f.$": "States.Format('{}-{}', $.a, $v.k[1])"}
    assert paths.template(tmpl, {"a": 1}, SCOPE, INTRINSIC) == {
        "lit": "$.a", "p": 1, "n": [{"c": "e1"}], "f": "1-20"}


@pytest.mark.parametrize("bad", ["$.a[", "a.b", "$..[?("])
def test_bad_paths_are_syntax_errors(bad: str) -> None:
    with pytest.raises(paths.PathSyntaxError):
        paths.check(bad)


@pytest.mark.parametrize(("expr", "want"), [
    ("States.Array(1, 'two', null, true)", [1, "two", None, True]),
    ("States.Format('a\\{\\}{}', 'x')", "a{}x"),
    ("States.Format('it\\'s {}', States.ArrayLength(States.Array(1, 2)))", "it's 2"),
    ("States.MathAdd(-1.5, 2.5)", 2),  # each rounded half up, as Java's Math.round
    ("States.StringSplit('a,,b;c', ',;')", ["a", "b", "c"]),
    ("States.ArrayRange(10, 0, -5)", [10, 5, 0]),
    ("States.JsonMerge(States.StringToJson('{\"a\":1}'), States.StringToJson('{\"b\":2}'), "
     "false)", {"a": 1, "b": 2}),
    ("States.Hash('abc', 'SHA-1')", "a9993e364706816aba3e25717850c26c9cd0d89d"),
    ("States.ArrayUnique(States.Array(1, 1.0, true, 1))", [1, True]),
])
def test_intrinsics(expr: str, want: object) -> None:
    assert INTRINSIC(expr, {}, SCOPE) == want


@pytest.mark.parametrize("expr", [
    "States.ArrayGetItem(States.Array(1), 3)",
    "States.ArrayPartition(States.Array(1), 0)",
    "States.ArrayRange(0, 2000, 1)",
    "States.MathAdd('1', 2)",
    "States.JsonMerge(States.StringToJson('{}'), States.StringToJson('{}'), true)",
    "States.Hash('x', 'SHA-3')",
    "States.Base64Decode('***')",
    "States.StringToJson('{nope')",
    "States.Format('{} {}', 1)",
    "States.MathRandom(5, 5)",
    "States.UUID(1)",
])
def test_intrinsic_failures_are_states_intrinsic_failure(expr: str) -> None:
    with pytest.raises(StatesError) as info:
        INTRINSIC(expr, {}, SCOPE)
    assert info.value.error == "States.IntrinsicFailure"


@pytest.mark.parametrize("expr", ["States.Nope()", "States.Format('x'", "States.Array(1 2)",
                                  "States.Format('\\\"')"])
def test_malformed_calls_do_not_parse(expr: str) -> None:
    with pytest.raises(intrinsics.IntrinsicSyntaxError):
        intrinsics.parse(expr)


def test_all_eighteen_functions_are_there() -> None:
    assert len(intrinsics.FUNCTIONS) == 18
