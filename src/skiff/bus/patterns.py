"""EventBridge-style event patterns, as pure functions.

A rule written for Amazon EventBridge routes the same events here, so apps move
both ways unchanged. A pattern mirrors the event's shape; each leaf is a list of
conditions of which *any* must hold, and every field named must match (AND)::

    {"source": ["shop.orders"],
     "detail": {"total": [{"numeric": [">", 100]}],
                "$or": [{"country": ["NL"]}, {"vip": [True]}]}}

Conditions: exact values (string, number, true/false, null; ``1`` and ``1.0``
are equal, ``true`` is not ``1``), ``prefix``, ``suffix`` (each optionally
``{"equals-ignore-case": ...}``), ``equals-ignore-case``, ``wildcard`` (``*``
for any run of characters, ``\\*`` for a star), ``anything-but`` (a value, a
list, or ``{prefix|suffix|equals-ignore-case|wildcard: ...}``), ``numeric``
(``["=", 5]`` or one lower and/or one upper bound), ``exists`` and ``cidr``;
``$or`` (a list of two or more sub-patterns) at any level.

Semantics follow EventBridge where it documents them: a field whose event
value is an array matches if any element does, and one element must satisfy a
whole nested sub-pattern (no mixing fields of different elements);
``exists`` looks at leaves only (an object is not a leaf, so
``{"exists": false}`` matches a field holding an object); every condition but
``exists: false`` needs the field present. ``anything-but`` with a value or a
list matches any leaf not listed, whatever its type; its string forms match
only strings, like the other string operators.

:func:`validate_pattern` checks a rule when it is saved and names the bad
spot; :func:`matches` trusts a validated pattern and never raises.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import re
from collections.abc import Iterator
from typing import Any, NoReturn

from skiff.bus.errors import InvalidPattern

_STRING_OPS = ("prefix", "suffix", "equals-ignore-case", "wildcard")
_OPERATORS = frozenset({*_STRING_OPS, "anything-but", "numeric", "exists", "cidr"})
_LOWER = (">", ">=")
_UPPER = ("<", "<=")
_MISSING = object()


# -- matching --------------------------------------------------------------------
def matches(pattern: dict[str, Any], event: Any) -> bool:
    """True if ``event`` (a JSON-like dict) satisfies the validated ``pattern``."""
    return isinstance(event, dict) and _match_object(pattern, event)


def _match_object(pattern: dict[str, Any], obj: dict[str, Any]) -> bool:
    for key, sub in pattern.items():
        if key == "$or" and isinstance(sub, list):
            if not any(_match_object(alternative, obj) for alternative in sub):
                return False
            continue
        value = obj.get(key, _MISSING)
        if isinstance(sub, dict):
            candidates = [v for v in _flatten(value) if isinstance(v, dict)] or [{}]
            if not any(_match_object(sub, candidate) for candidate in candidates):
                return False
        else:
            leaves = [v for v in _flatten(value) if not isinstance(v, dict)]
            if not any(_match_condition(condition, leaves) for condition in sub):
                return False
    return True


def _flatten(value: Any) -> Iterator[Any]:
    if value is _MISSING:
        return
    if isinstance(value, list):
        for item in value:
            yield from _flatten(item)
    else:
        yield value


def _match_condition(condition: Any, leaves: list[Any]) -> bool:
    if not isinstance(condition, dict):
        return any(_equal(condition, leaf) for leaf in leaves)
    [(op, arg)] = condition.items()
    if op == "exists":
        return bool(leaves) is arg
    test = _TESTS[op]
    return any(test(arg, leaf) for leaf in leaves)


def _equal(expected: Any, value: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return type(expected) is type(value) and expected == value
    if _is_number(expected):
        return _is_number(value) and expected == value
    return type(expected) is type(value) and expected == value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fold(text: str) -> str:
    return text.casefold()


def _prefix(arg: Any, value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if isinstance(arg, dict):
        return _fold(value).startswith(_fold(arg["equals-ignore-case"]))
    return value.startswith(arg)


def _suffix(arg: Any, value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if isinstance(arg, dict):
        return _fold(value).endswith(_fold(arg["equals-ignore-case"]))
    return value.endswith(arg)


def _equals_ignore_case(arg: Any, value: Any) -> bool:
    options = arg if isinstance(arg, list) else [arg]
    return isinstance(value, str) and any(_fold(value) == _fold(o) for o in options)


def _wildcard(arg: Any, value: Any) -> bool:
    options = arg if isinstance(arg, list) else [arg]
    return isinstance(value, str) and any(_wildcard_regex(o).fullmatch(value) for o in options)


@functools.lru_cache(maxsize=1024)
def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    literal = ""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            literal += pattern[i + 1]
            i += 2
            continue
        if ch == "*":
            parts.append(re.escape(literal) + ".*")
            literal = ""
        else:
            literal += ch
        i += 1
    parts.append(re.escape(literal))
    return re.compile("".join(parts), re.DOTALL)


def _numeric(arg: list[Any], value: Any) -> bool:
    if not _is_number(value):
        return False
    for op, bound in zip(arg[::2], arg[1::2], strict=True):
        ok = {"=": value == bound, ">": value > bound, ">=": value >= bound,
              "<": value < bound, "<=": value <= bound}[op]
        if not ok:
            return False
    return True


def _cidr(arg: str, value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return ipaddress.ip_address(value) in _network(arg)
    except ValueError:
        return False


@functools.lru_cache(maxsize=256)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


def _anything_but(arg: Any, value: Any) -> bool:
    if isinstance(arg, dict):
        [(op, sub)] = arg.items()
        return isinstance(value, str) and not _TESTS[op](sub, value)
    options = arg if isinstance(arg, list) else [arg]
    return not any(_equal(o, value) for o in options)


_TESTS = {
    "prefix": _prefix,
    "suffix": _suffix,
    "equals-ignore-case": _equals_ignore_case,
    "wildcard": _wildcard,
    "numeric": _numeric,
    "cidr": _cidr,
    "anything-but": _anything_but,
}


# -- validation ------------------------------------------------------------------
def validate_pattern(pattern: Any) -> None:
    """Raise :class:`InvalidPattern` (naming the path) unless ``pattern`` is valid."""
    if not isinstance(pattern, dict):
        _fail("", f"a pattern must be a JSON object, got {_kind(pattern)}")
    _validate_object(pattern, "")


def _validate_object(obj: dict[Any, Any], path: str) -> None:
    if not obj:
        _fail(path, "an empty object matches nothing useful; name at least one field")
    for key, sub in obj.items():
        here = _join(path, key)
        if not isinstance(key, str):
            _fail(path, f"field names must be strings, got {key!r}")
        if key == "$or":
            if not isinstance(sub, list) or len(sub) < 2:
                _fail(here, "$or takes a list of at least two patterns")
            for i, alternative in enumerate(sub):
                if not isinstance(alternative, dict):
                    _fail(f"{here}[{i}]", f"each $or entry must be an object, got "
                                          f"{_kind(alternative)}")
                _validate_object(alternative, f"{here}[{i}]")
        elif isinstance(sub, dict):
            _validate_object(sub, here)
        elif isinstance(sub, list):
            if not sub:
                _fail(here, "an empty list matches nothing; give at least one value")
            for i, condition in enumerate(sub):
                _validate_condition(condition, f"{here}[{i}]")
        else:
            _fail(here, f"match values must be in a list, e.g. [{_json(sub)}]")


def _validate_condition(condition: Any, path: str) -> None:
    if condition is None or isinstance(condition, str | bool):
        return
    if _is_number(condition):
        _check_number(condition, path)
        return
    if not isinstance(condition, dict):
        _fail(path, f"a match value must be a string, number, boolean, null or an operator "
                    f"object, got {_kind(condition)}")
    if len(condition) != 1:
        _fail(path, f"an operator object holds exactly one operator, got {sorted(condition)}")
    [(op, arg)] = condition.items()
    here = f"{path}.{op}"
    if op not in _OPERATORS:
        _fail(here, f"unknown operator {op!r}; known: {', '.join(sorted(_OPERATORS))}")
    if op in ("prefix", "suffix"):
        if isinstance(arg, dict):
            if list(arg) != ["equals-ignore-case"] or not isinstance(arg["equals-ignore-case"],
                                                                     str):
                _fail(here, f'{op} takes a string or {{"equals-ignore-case": "<string>"}}')
        elif not isinstance(arg, str):
            _fail(here, f"{op} takes a string, got {_kind(arg)}")
    elif op == "equals-ignore-case":
        _check_str(arg, here)
    elif op == "wildcard":
        _check_wildcard(arg, here)
    elif op == "numeric":
        _check_numeric(arg, here)
    elif op == "exists":
        if not isinstance(arg, bool):
            _fail(here, f"exists takes true or false, got {_json(arg)}")
    elif op == "cidr":
        if not isinstance(arg, str):
            _fail(here, f"cidr takes a string like 10.0.0.0/24, got {_kind(arg)}")
        try:
            _network(arg)
        except ValueError:
            _fail(here, f"{arg!r} is not an IPv4 or IPv6 network")
    else:
        _check_anything_but(arg, here)


def _check_str(arg: Any, path: str) -> None:
    if not isinstance(arg, str):
        _fail(path, f"expected a string, got {_kind(arg)}")


def _check_number(value: Any, path: str) -> None:
    if not math.isfinite(value):
        _fail(path, f"{value!r} is not a finite number")


def _check_wildcard(arg: Any, path: str) -> None:
    _check_str(arg, path)
    i = 0
    while i < len(arg):
        if arg[i] == "\\":
            if i + 1 >= len(arg) or arg[i + 1] not in "*\\":
                _fail(path, "in a wildcard, a backslash may only escape * or \\")
            i += 2
            continue
        if arg.startswith("**", i):
            _fail(path, "consecutive wildcard characters (**) are not allowed")
        i += 1


def _check_numeric(arg: Any, path: str) -> None:
    if not isinstance(arg, list) or len(arg) not in (2, 4):
        _fail(path, 'numeric takes ["=", n], [">", n], or a range like [">", 0, "<=", 5]')
    ops = arg[::2]
    for i, (op, bound) in enumerate(zip(ops, arg[1::2], strict=True)):
        if op not in ("=", *_LOWER, *_UPPER):
            _fail(f"{path}[{2 * i}]", f"unknown comparison {op!r}; use =, <, <=, > or >=")
        if not _is_number(bound):
            _fail(f"{path}[{2 * i + 1}]", f"numeric bounds must be numbers, got {_kind(bound)}")
        _check_number(bound, f"{path}[{2 * i + 1}]")
    if len(ops) == 2:
        lower = [b for op, b in zip(ops, arg[1::2], strict=True) if op in _LOWER]
        upper = [b for op, b in zip(ops, arg[1::2], strict=True) if op in _UPPER]
        if "=" in ops or len(lower) != 1 or len(upper) != 1:
            _fail(path, "a numeric range needs one lower bound (> or >=) and one upper "
                        "bound (< or <=)")
        if lower[0] >= upper[0]:
            _fail(path, f"the range is empty: lower bound {lower[0]} is not below {upper[0]}")


def _check_anything_but(arg: Any, path: str) -> None:
    if isinstance(arg, dict):
        if len(arg) != 1:
            _fail(path, f"anything-but takes one operator, got {sorted(arg)}")
        [(op, sub)] = arg.items()
        here = f"{path}.{op}"
        if op in ("prefix", "suffix"):
            _check_str(sub, here)
        elif op in ("equals-ignore-case", "wildcard"):
            for i, item in enumerate(sub if isinstance(sub, list) else [sub]):
                check = _check_wildcard if op == "wildcard" else _check_str
                check(item, f"{here}[{i}]" if isinstance(sub, list) else here)
            if isinstance(sub, list) and not sub:
                _fail(here, "an empty list excludes nothing")
        else:
            _fail(here, f"anything-but takes a value, a list, or one of "
                        f"{', '.join(_STRING_OPS)}; not {op!r}")
    elif isinstance(arg, list):
        if not arg:
            _fail(path, "an empty anything-but list excludes nothing")
        if not (all(isinstance(v, str) for v in arg) or all(_is_number(v) for v in arg)):
            _fail(path, "an anything-but list holds only strings or only numbers")
        for i, v in enumerate(arg):
            if _is_number(v):
                _check_number(v, f"{path}[{i}]")
    elif isinstance(arg, str):
        return
    elif _is_number(arg):
        _check_number(arg, path)
    else:
        _fail(path, f"anything-but takes a string, a number, a list or an operator object, "
                    f"got {_kind(arg)}")


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def _json(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _fail(path: str, message: str) -> NoReturn:
    where = path or "(pattern)"
    raise InvalidPattern(f"invalid event pattern at {where}: {message}", path=where)
