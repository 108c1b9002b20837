"""JSONPath for ASL: reference paths, Paths, payload templates and ResultPath.

Reading uses jsonpath-ng (its ``ext`` parser, for filter expressions like
``$.users[?(@.status == 0)]``). What ASL adds on top, as AWS behaves:

- three roots: ``$`` the state's input, ``$$`` the context object, ``$name`` a variable;
- a *definite* path (fields and indexes only) gives one value or fails with States.Runtime;
  an *indefinite* one (wildcard, slice, filter, union, ``..``) gives a list, ``[]`` when
  nothing matches (AWS does not fail there, the spec says nothing);
- writing (ResultPath) takes a reference path only and creates missing objects on the way,
  as the spec says; it is the library's parser walked by hand, since jsonpath-ng's
  ``update_or_create`` silently replaces a non-object in the way instead of failing with
  States.ResultPathMatchFailure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from jsonpath_ng import jsonpath as jp
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext import parse as _parse

from .errors import RESULT_PATH_MATCH_FAILURE, RUNTIME, StatesError

_VARIABLE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)(.*)$", re.S)


class PathSyntaxError(ValueError):
    """A path that does not parse (validation turns it into a diagnostic)."""


def dumps(value: Any) -> str:
    """JSON as AWS prints it in error causes and JsonToString: compact."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def split(path: str) -> tuple[str, str | None, str]:
    """``(root, variable, rest)``: root is "input", "context" or "variable"; rest is a
    JSONPath over that root's value, starting with ``$``."""
    if path.startswith("$$"):
        return "context", None, "$" + path[2:]
    m = _VARIABLE.match(path)
    if m:
        return "variable", m.group(1), "$" + m.group(2)
    if path.startswith("$"):
        return "input", None, path
    raise PathSyntaxError(f"a path starts with '$', got {path!r}")


def _literal_backslashes(rest: str) -> str:
    """AWS reads a backslash inside a quoted bracket name (``$['a\\"b']``) as itself;
    jsonpath-ng's lexer would take it as an escape, so it is doubled before parsing."""
    if "\\" not in rest:
        return rest
    out, quote, escaped = [], "", False
    for i, c in enumerate(rest):
        if escaped:
            escaped = False
        elif quote and c == "\\":
            if rest[i + 1: i + 2] == quote:
                escaped = True  # \' stays the lexer's escape of the quote
            else:
                out.append("\\\\")
                continue
        elif c in "'\"" and (not quote or c == quote):
            quote = "" if quote else c
        out.append(c)
    return "".join(out)


@lru_cache(maxsize=4096)
def compile_path(rest: str) -> jp.JSONPath:
    if rest == "$":
        return jp.Root()
    try:
        return _parse(_literal_backslashes(rest))
    except (JsonPathLexerError, JsonPathParserError, Exception) as e:
        raise PathSyntaxError(f"invalid JSONPath {rest!r}: {e}") from None


def check(path: str) -> None:
    """Raise PathSyntaxError when ``path`` does not parse."""
    _root, _var, rest = split(path)
    compile_path(rest)


def _definite(node: jp.JSONPath) -> bool:
    if isinstance(node, (jp.Root, jp.This)):
        return True
    if isinstance(node, jp.Child):
        return _definite(node.left) and _definite(node.right)
    if isinstance(node, jp.Fields):
        return len(node.fields) == 1 and node.fields[0] != "*"
    if isinstance(node, jp.Index):
        return len(node.indices) == 1
    return False  # Slice, Descendants, Filter, Union, Where...


class Scope:
    """What a path can read: the input, the context object and the variables."""

    __slots__ = ("context", "variables")

    def __init__(self, context: Mapping[str, Any], variables: Mapping[str, Any]) -> None:
        self.context = context
        self.variables = variables


def read(path: str, value: Any, scope: Scope, *,
         on_missing: Callable[[str], StatesError] | None = None) -> Any:
    """The value ``path`` selects. A definite path that selects nothing raises
    States.Runtime (or what ``on_missing`` builds, for AWS's per-field wording)."""
    root, var, rest = split(path)
    if root == "context":
        value = scope.context
    elif root == "variable":
        if var not in scope.variables:
            raise (on_missing(path) if on_missing else StatesError(
                RUNTIME, f"The variable '{var}' referenced by the path '{path}' is not defined"))
        value = scope.variables[var]
    expr = compile_path(rest)
    if isinstance(expr, jp.Root):
        return value
    matches = expr.find(value)
    if not _definite(expr):
        return [m.value for m in matches]
    if not matches:
        raise (on_missing(path) if on_missing else StatesError(
            RUNTIME, f"Invalid path '{path}' : {_why_missing(rest, value)}"))
    return matches[0].value


def _why_missing(rest: str, value: Any) -> str:
    """AWS's wording: the last step missing is "No results", an earlier one "Missing
    property" (naming the path up to it)."""
    try:
        steps = _steps(compile_path(rest))
    except PathSyntaxError:
        return f"No results for path: {rest}"
    node = value
    for i, step in enumerate(steps):
        ok = (isinstance(step, int) and isinstance(node, list) and -len(node) <= step < len(node)
              ) or (isinstance(step, str) and isinstance(node, dict) and step in node)
        if not ok:
            if i == len(steps) - 1:
                break
            return f"Missing property in path {_render(steps[:i + 1])}"
        node = node[step]
    return f"No results for path: {_render(steps)}"


def _render(steps: list[str | int]) -> str:
    return "$" + "".join(f"[{s}]" if isinstance(s, int) else f"['{s}']" for s in steps)


def _steps(node: jp.JSONPath) -> list[str | int]:
    if isinstance(node, jp.Root):
        return []
    if isinstance(node, jp.Child):
        return _steps(node.left) + _steps(node.right)
    if isinstance(node, jp.Fields) and len(node.fields) == 1 and node.fields[0] != "*":
        return [node.fields[0]]
    if isinstance(node, jp.Index) and len(node.indices) == 1:
        return [node.indices[0]]
    raise PathSyntaxError("a ResultPath is a reference path: fields and indexes only")


def check_reference(path: str) -> None:
    root, _var, rest = split(path)
    if root != "input":
        raise PathSyntaxError(f"{path!r} must refer to the state's input ($...)")
    _steps(compile_path(rest))


@lru_cache(maxsize=4096)
def _reference(path: str) -> tuple[str | int, ...]:
    return tuple(_steps(compile_path(split(path)[2])))


def put(path: str | None, target: Any, value: Any) -> Any:
    """``target`` with ``value`` placed at ResultPath ``path``: a new value, ``target`` is
    left as it was (``None`` drops the result and keeps the input, ``$`` replaces it).

    Only the objects along the path are copied; the rest is shared with ``target``. Values
    are never changed in place anywhere in the interpreter, so sharing is safe, and a
    deep copy of a large input on every state was the interpreter's largest cost
    (1.5 ms of a 1.5 ms Task state with a 2 KB input, measured)."""
    if path is None:
        return target
    steps = _reference(path)
    if not steps:
        return value
    return _put(steps, 0, target, value, path, target)


def _put(steps: tuple[str | int, ...], i: int, node: Any, value: Any, path: str,
         whole: Any) -> Any:
    step = steps[i]
    last = i == len(steps) - 1
    if isinstance(step, int):
        if not isinstance(node, list) or not -len(node) <= step < len(node):
            raise _match_failure(path, whole)
        out_list = list(node)
        out_list[step] = value if last else _put(steps, i + 1, node[step], value, path, whole)
        return out_list
    if not isinstance(node, dict):
        raise _match_failure(path, whole)
    out = dict(node)
    if last:
        out[step] = value
    else:
        out[step] = _put(steps, i + 1, node.get(step, {}), value, path, whole)
    return out


def _match_failure(path: str, target: Any) -> StatesError:
    return StatesError(RESULT_PATH_MATCH_FAILURE,
                       f"Unable to apply ResultPath '{path}' to input {dumps(target)}")


def template(tmpl: Any, value: Any, scope: Scope,
             intrinsic: Callable[[str, Any, Scope], Any]) -> Any:
    """A Parameters / ResultSelector / ItemSelector / Assign payload template, evaluated:
    a key ending in ``.$`` takes the value of the path or intrinsic function it holds."""
    if isinstance(tmpl, dict):
        out = {}
        for k, v in tmpl.items():
            if k.endswith(".$") and isinstance(v, str):
                name = k[:-2]
                if v.startswith("$"):
                    out[name] = read(v, value, scope, on_missing=_field_missing(k, value))
                else:
                    out[name] = intrinsic(v, value, scope)
            else:
                out[k] = template(v, value, scope, intrinsic)
        return out
    if isinstance(tmpl, list):
        return [template(v, value, scope, intrinsic) for v in tmpl]
    return tmpl


def _field_missing(field: str, value: Any) -> Callable[[str], StatesError]:
    def build(path: str) -> StatesError:
        return StatesError(RUNTIME, f"The JSONPath '{path}' specified for the field '{field}' "
                                    f"could not be found in the input '{dumps(value)}'")
    return build
