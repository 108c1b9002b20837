"""Choice rules (JSONPath mode): every comparison operator, And/Or/Not, the type tests.

AWS semantics, where the spec is loose: a comparison against a value of the wrong type
is false, not an error (``NumericEquals`` on a string, a boolean that is not a number);
a ``Variable`` that selects nothing fails the execution with States.Runtime, except under
``IsPresent``. JSONata rules (``Condition``) are evaluated by the interpreter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from . import paths, timestamps
from .errors import RUNTIME, StatesError

_MISSING = object()


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _lt(a: Any, b: Any) -> bool:
    return a < b


def _le(a: Any, b: Any) -> bool:
    return a <= b


def _gt(a: Any, b: Any) -> bool:
    return a > b


def _ge(a: Any, b: Any) -> bool:
    return a >= b


def _eq(a: Any, b: Any) -> bool:
    return a == b


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": _eq, "LessThan": _lt, "LessThanEquals": _le, "GreaterThan": _gt,
    "GreaterThanEquals": _ge,
}


def _compare(kind: str, op: str, a: Any, b: Any) -> bool:
    cmp = _ORDER[op]
    if kind == "String":
        return isinstance(a, str) and isinstance(b, str) and cmp(a, b)
    if kind == "Numeric":
        return _is_number(a) and _is_number(b) and cmp(a, b)
    if kind == "Boolean":
        return isinstance(a, bool) and isinstance(b, bool) and cmp(a, b)
    if kind == "Timestamp":
        ta, tb = timestamps.parse(a), timestamps.parse(b)
        return ta is not None and tb is not None and cmp(ta, tb)
    raise AssertionError(kind)


COMPARISONS: dict[str, tuple[str, str, bool]] = {}
for _kind in ("String", "Numeric", "Timestamp"):
    for _op in _ORDER:
        COMPARISONS[f"{_kind}{_op}"] = (_kind, _op, False)
        COMPARISONS[f"{_kind}{_op}Path"] = (_kind, _op, True)
COMPARISONS["BooleanEquals"] = ("Boolean", "Equals", False)
COMPARISONS["BooleanEqualsPath"] = ("Boolean", "Equals", True)
TYPE_TESTS = ("IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp")
OPERATORS = frozenset([*COMPARISONS, "StringMatches", *TYPE_TESTS])


def operator_of(rule: Mapping[str, Any]) -> str | None:
    for key in rule:
        if key in OPERATORS:
            return key
    return None


def matches_glob(value: str, pattern: str) -> bool:
    """``StringMatches``: ``*`` matches any run of characters; ``\\*`` and ``\\\\`` escape."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else re.escape(c))
        i += 1
    return re.fullmatch("".join(out), value, re.S) is not None


def evaluate(rule: Mapping[str, Any], value: Any, scope: paths.Scope) -> bool:
    """Whether ``rule`` (a Choice rule or a nested boolean expression) holds for ``value``."""
    if "And" in rule:
        return all(evaluate(r, value, scope) for r in rule["And"])
    if "Or" in rule:
        return any(evaluate(r, value, scope) for r in rule["Or"])
    if "Not" in rule:
        return not evaluate(rule["Not"], value, scope)
    op = operator_of(rule)
    if op is None:
        raise StatesError(RUNTIME, "A Choice rule has no comparison operator")
    variable = rule.get("Variable", "$")
    try:
        actual = paths.read(variable, value, scope)
    except StatesError:
        if op != "IsPresent":
            raise StatesError(RUNTIME, f"Invalid path '{variable}': The choice state's "
                                       f"condition path references an invalid value.") from None
        actual = _MISSING
    expected = rule[op]
    if op in TYPE_TESTS:
        return _type_test(op, actual) is bool(expected)
    if op == "StringMatches":
        return isinstance(actual, str) and isinstance(expected, str) and \
            matches_glob(actual, expected)
    kind, cmp, by_path = COMPARISONS[op]
    if by_path:
        expected = paths.read(expected, value, scope)
    return _compare(kind, cmp, actual, expected)


def _type_test(op: str, v: Any) -> bool:
    if op == "IsPresent":
        return v is not _MISSING
    if v is _MISSING:
        return False
    if op == "IsNull":
        return v is None
    if op == "IsNumeric":
        return _is_number(v)
    if op == "IsString":
        return isinstance(v, str)
    if op == "IsBoolean":
        return isinstance(v, bool)
    if op == "IsTimestamp":
        return timestamps.parse(v) is not None
    raise AssertionError(op)
