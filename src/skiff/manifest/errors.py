"""Turn validation failures into one ManifestError whose lines read
``{file}: {path}: {what is expected}, got {value}``. Paths use the YAML
names (``spec.routes[1].path``); pydantic's own wording never leaks out."""

from __future__ import annotations

import difflib
import json
import types
from typing import Annotated, Any, NoReturn, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ..errors import ManifestError
from .fields import ERROR_TYPE

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]

# What a structural pydantic error means for a field that has no expect().
_GENERIC_EXPECTED = {
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dict_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "invalid_key": "a field name",  # YAML allows `1:` or `~:` as keys
}
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="),
           "less_than": ("lt", "<"), "less_than_equal": ("le", "<=")}
# A wrong apiVersion or kind means the rest follows some other schema;
# listing its fields as unknown would bury the one line that matters.
_IDENTITY = {("apiVersion",), ("kind",)}


def show(value: Any, limit: int = 60) -> str:
    """A value the way YAML/JSON would spell it (true, null, "text"), clipped."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_path(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def raise_problems(file: str, problems: list[Problem]) -> NoReturn:
    """Raise one ManifestError with a line per problem, sorted by path."""

    def key(problem: Problem) -> tuple[list[tuple[int, Any]], str]:
        loc, message = problem
        # Indexes sort as numbers so routes[2] comes before routes[10].
        parts = [(0, p) if isinstance(p, int) else (1, str(p)) for p in loc]
        return parts, message

    errors = []
    for loc, message in sorted(set(problems), key=key):
        errors.append({"path": format_path(loc), "message": message})
    lines = [f"{file}: {e['path']}: {e['message']}" if e["path"] else f"{file}: {e['message']}"
             for e in errors]
    raise ManifestError("\n".join(lines), file=file, errors=errors)


def problems_from(exc: ValidationError, root: type[BaseModel]) -> list[Problem]:
    problems = [_problem(error, root) for error in exc.errors(include_url=False)]
    identity = [p for p in problems if p[0] in _IDENTITY and p[1] != "field required"]
    return identity or problems


def _problem(error: Any, root: type[BaseModel]) -> Problem:
    loc: Loc = tuple(p for p in error["loc"] if p != "[key]")  # a bad key: point at it
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == ERROR_TYPE:
        loc += tuple(ctx.get("at", ()))
        if "message" in ctx:
            return loc, ctx["message"]
        return loc, f"expected {ctx['expected']}, got {show(ctx.get('value', error['input']))}"
    if kind == "missing":
        return loc, "field required"
    if kind == "extra_forbidden":
        return loc, _unknown_field(loc, root)
    bound = _BOUNDS.get(kind)
    if bound is not None:
        key, op = bound
        return loc, f"expected a number {op} {ctx.get(key)}, got {show(error['input'])}"
    if kind == "literal_error":
        return loc, f"expected one of {ctx.get('expected')}, got {show(error['input'])}"
    expected = _GENERIC_EXPECTED.get(kind, "a valid value")
    return loc, f"expected {expected}, got {show(error['input'])}"


def _unknown_field(loc: Loc, root: type[BaseModel]) -> str:
    model = _model_at(loc[:-1], root)
    if model is None:
        return "unknown field"
    known = [field.alias or name for name, field in model.model_fields.items()]
    key = str(loc[-1])

    def squash(name: str) -> str:
        return name.replace("_", "").replace("-", "").lower()

    # min_instances / MinInstances are the same word as minInstances.
    same = [name for name in known if squash(name) == squash(key)]
    close = same or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown field (did you mean {close[0]}?)"
    return f"unknown field (expected one of: {', '.join(known)})"


def _model_at(loc: Loc, root: type[BaseModel]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc``, if any."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = current.model_fields.items()
            field = next((f for name, f in fields if (f.alias or name) == part), None)
            if field is None:
                return None
            current = field.annotation
        else:
            args = get_args(current)
            if not args:
                return None
            # tuple[X, ...] -> X for an index; dict[K, V] -> V for a key.
            current = args[0] if isinstance(part, int) else args[-1]
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and Optional[...] down to the type underneath."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation
