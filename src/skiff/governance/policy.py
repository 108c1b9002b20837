"""Policies as code: CEL expressions over what a deploy asks for, evaluated in-process.

A policy is ``{id, expression, message, enforcement}``; its expression is CEL
(as Kubernetes ValidatingAdmissionPolicy) over one variable, ``input`` (see
:func:`skiff.governance.admission.policy_input` for its fields), and is
*true when the app complies*. :func:`evaluate` is pure: the same policies and
input give the same decisions, which tests/governance/golden/ records.

Failing closed (Gatekeeper's fail-open default is the known complaint): an
expression that errors (a missing field, a type mismatch) or yields anything
but a boolean is a *deny* of that policy, naming it and the error, whatever
its enforcement says. An expression that does not parse is refused when the
policy is loaded, with its file, line and column.

Cost: CEL has no loops or recursion, so an expression's cost is bounded by its
size and by how deeply comprehensions (``all``, ``exists``, ``map``...) nest
over input lists. Both are capped at load (:data:`MAX_EXPRESSION_CHARS`,
:data:`MAX_COMPREHENSION_DEPTH`), so no policy someone sends through the API
can make a deploy evaluate for long.

The library is cel-python (``celpy``): pure Python (no native wheel to match
the platform), maintained by Cloud Custodian, and its parse errors carry line
and column as attributes; evaluation is off the request path (deploys and
policy changes only), where its speed is plenty.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from skiff.errors import SkiffError

Enforcement = Literal["deny", "warn", "audit"]
ENFORCEMENTS: tuple[str, ...] = ("deny", "warn", "audit")

#: A policy is a check someone reads, not a program: 4 KiB holds any checklist item
#: and keeps the parse (recursive) and the evaluation small.
MAX_EXPRESSION_CHARS = 4096
#: all/exists/map over a list inside another: two levels compare two lists (hosts
#: against an approved list); a third would be cubic in the input for no checklist item.
MAX_COMPREHENSION_DEPTH = 2
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")

# celpy logs every evaluation step at DEBUG and errors at WARNING: the decision says it
logging.getLogger("celpy").setLevel(logging.CRITICAL)


class PolicyError(SkiffError):
    """A policy that cannot be loaded (422 invalid_policy): says where and why."""

    status = 422
    code = "invalid_policy"


class PolicyDenied(SkiffError):
    """A deploy that deny policies refuse (403 policy_denied), listing each one."""

    status = 403
    code = "policy_denied"


@dataclass(frozen=True)
class Policy:
    id: str
    expression: str
    message: str
    enforcement: Enforcement = "deny"
    source: str = "api"  # the file it came from, "api", or "builtin"
    program: Any = field(default=None, compare=False, repr=False)
    #: the resources it judges: apps (the default) and/or state machines
    kinds: tuple[str, ...] = ("MicroApp",)

    def to_dict(self) -> dict:
        return {"id": self.id, "expression": self.expression, "message": self.message,
                "enforcement": self.enforcement, "source": self.source,
                "kinds": list(self.kinds)}


@dataclass(frozen=True)
class Decision:
    """One policy's verdict on one input. ``allowed`` False with enforcement deny
    refuses the deploy; warn goes back to the author; audit is only recorded."""

    policy: str
    enforcement: Enforcement
    allowed: bool
    message: str
    error: str | None = None  # the evaluation failed: a deny (fail closed)

    def to_dict(self) -> dict:
        out = {"policy": self.policy, "enforcement": self.enforcement, "allowed": self.allowed,
               "message": self.message}
        if self.error is not None:
            out["error"] = self.error
        return out


def compile_policy(raw: Mapping[str, Any], *, source: str = "api", line: int = 1,
                   expression_at: tuple[int, int, int] | None = None) -> Policy:
    """A checked, compiled Policy from its mapping, or PolicyError naming ``source``
    and the line and column (in the file) of what is wrong. ``line``: where the
    policy starts; ``expression_at``: (line, column, indent) of the expression's
    first character, and the indent of its later lines (a block scalar's)."""
    import celpy

    where = f"{source}:{line}"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: a policy is a mapping with id, expression, message and "
                          "enforcement", source=source, line=line, column=1)
    unknown = sorted(set(raw) - {"id", "expression", "message", "enforcement", "kinds"})
    if unknown:
        raise PolicyError(f"{where}: unknown field(s) {', '.join(unknown)}; a policy has id, "
                          "expression, message, enforcement and kinds", source=source,
                          line=line, column=1)
    kinds = raw.get("kinds", ["MicroApp"])
    if (not isinstance(kinds, list) or not kinds
            or not all(k in ("MicroApp", "StateMachine") for k in kinds)):
        raise PolicyError(f"{where}: kinds must be a list of MicroApp and/or StateMachine, "
                          f"got {kinds!r}", source=source, line=line, column=1)
    pid, expression, message = raw.get("id"), raw.get("expression"), raw.get("message")
    enforcement = raw.get("enforcement", "deny")
    for name, value in (("id", pid), ("expression", expression), ("message", message)):
        if not isinstance(value, str) or not value.strip():
            raise PolicyError(f"{where}: {name} must be a non-empty string", source=source,
                              line=line, column=1)
    assert isinstance(pid, str) and isinstance(expression, str) and isinstance(message, str)
    if len(pid) > 100 or not set(pid) <= _ID_CHARS or not pid[0].isalnum():
        raise PolicyError(f"{where}: id {pid!r} must be lowercase letters, digits, '-', '.' or "
                          "'_' (at most 100), starting with a letter or digit", source=source,
                          line=line, column=1)
    if enforcement not in ENFORCEMENTS:
        raise PolicyError(f"{where}: policy {pid}: enforcement must be deny, warn or audit, "
                          f"got {enforcement!r}", source=source, line=line, column=1)
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise PolicyError(f"{where}: policy {pid}: the expression is over "
                          f"{MAX_EXPRESSION_CHARS} characters", source=source, line=line,
                          column=1)
    env = celpy.Environment()
    try:
        ast = env.compile(expression)
    except celpy.CELParseError as exc:
        eline, ecol = getattr(exc, "line", None), getattr(exc, "column", None)
        if eline is None:  # lark gives no place for an unexpected end: it is after the text
            body = expression.rstrip().splitlines() or [""]
            eline, ecol = len(body), len(body[-1]) + 1
        ecol = ecol or 1
        first_line, first_col, indent = expression_at or (line, 1, 0)
        fline = first_line + eline - 1
        fcol = first_col + ecol - 1 if eline == 1 else indent + ecol
        raise PolicyError(
            f"{source}:{fline}:{fcol}: policy {pid}: the expression does not parse at its "
            f"line {eline}, column {ecol}: {_parse_problem(expression, eline, ecol)}", source=source, line=fline,
            column=fcol, policy=pid) from None
    except RecursionError:
        raise PolicyError(f"{where}: policy {pid}: the expression is nested too deeply",
                          source=source, line=line, column=1, policy=pid) from None
    depth = _comprehension_depth(ast)
    if depth > MAX_COMPREHENSION_DEPTH:
        raise PolicyError(f"{where}: policy {pid}: comprehensions (all, exists, map, filter) "
                          f"nest {depth} deep; at most {MAX_COMPREHENSION_DEPTH}",
                          source=source, line=line, column=1, policy=pid)
    return Policy(pid, expression, message, enforcement, source, env.program(ast),
                  tuple(dict.fromkeys(kinds)))


def _comprehension_depth(tree: Any) -> int:
    """How deeply macro calls nest in a celpy parse tree (iteratively: no recursion
    on a tree an API caller shaped)."""
    from lark import Token, Tree

    deepest = 0
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, Tree):
            continue
        if node.data == "member_dot_arg" and any(
                isinstance(c, Token) and str(c) in _MACROS for c in node.children):
            depth += 1
            deepest = max(deepest, depth)
        stack.extend((c, depth) for c in node.children)
    return deepest


def parse_policies(text: str, *, source: str) -> list[Policy]:
    """Every policy of one YAML document: a mapping, a list of them, or
    ``{policies: [...]}``; a YAML error names its line and column too."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise PolicyError(f"{source}:{line}:{col}: not valid YAML: {exc.problem}",
                          source=source, line=line, column=col) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}", source=source, line=1,
                          column=1) from None
    if node is None:
        return []
    data = yaml.safe_load(text)
    items: list[tuple[Any, Any]]
    if isinstance(node, yaml.SequenceNode):
        items = list(zip(data, node.value, strict=True))
    elif isinstance(node, yaml.MappingNode) and isinstance(data, dict) and "policies" in data:
        seq = next(v for k, v in node.value if k.value == "policies")
        if not isinstance(seq, yaml.SequenceNode):
            raise PolicyError(f"{source}: policies must be a list", source=source, line=1,
                              column=1)
        items = list(zip(data["policies"], seq.value, strict=True))
    else:
        items = [(data, node)]
    out = [compile_policy(raw, source=source, line=item.start_mark.line + 1,
                          expression_at=_expression_at(item, text))
           for raw, item in items]
    seen: set[str] = set()
    for policy in out:
        if policy.id in seen:
            raise PolicyError(f"{source}: policy id {policy.id} appears twice", source=source,
                              line=1, column=1, policy=policy.id)
        seen.add(policy.id)
    return out


def _expression_at(node: Any, text: str) -> tuple[int, int, int] | None:
    """(line, column, indent), 1-based, of the first character of the expression's
    text in the file: a block scalar's text starts on the line after ``|``."""
    if not isinstance(node, yaml.MappingNode):
        return None
    for key, value in node.value:
        if key.value != "expression" or not isinstance(value, yaml.ScalarNode):
            continue
        if value.style in ("|", ">"):
            lines = text.splitlines()
            row = value.start_mark.line + 1  # 0-based index of the text's first line
            body = lines[row] if row < len(lines) else ""
            indent = len(body) - len(body.lstrip(" "))
            return row + 1, indent + 1, indent
        quote = 1 if value.style in ("'", '"') else 0
        return value.start_mark.line + 1, value.start_mark.column + 1 + quote, 0
    return None


def _parse_problem(expression: str, line: int, column: int) -> str:
    """What is at the error (celpy's message only echoes the text with a caret)."""
    lines = expression.splitlines() or [""]
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    at = text[column - 1] if 0 < column <= len(text) else ""
    if at and (at in "$#@`~\\;" or not at.isascii()):
        return f"unexpected {at!r}"
    rest = text[column - 1:].split() if column > 0 else []
    if line >= len(lines) and len(rest) <= 1:  # the parser stopped at the last token
        return "the expression ends too early (an unclosed bracket or a missing operand?)"
    return f"unexpected {text[column - 1]!r}" if 0 < column <= len(text) else "syntax error"


def load_policy_dir(directory: Path) -> list[Policy]:
    """Every policy in ``directory/*.yaml`` (sorted by file name); the first file that
    does not load stops the load with its PolicyError."""
    if not directory.is_dir():
        return []
    out: list[Policy] = []
    seen: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        for policy in parse_policies(path.read_text(), source=str(path)):
            if policy.id in seen:
                raise PolicyError(f"{path}: policy id {policy.id} is also in {seen[policy.id]}",
                                  source=str(path), line=1, column=1, policy=policy.id)
            seen[policy.id] = str(path)
            out.append(policy)
    return out


def builtin_policies() -> list[Policy]:
    """The built-in pack (builtin_policies.yaml beside this module)."""
    path = Path(__file__).with_name("builtin_policies.yaml")
    return parse_policies(path.read_text(), source="builtin")


def evaluate(policies: Iterable[Policy], input: Mapping[str, Any]) -> list[Decision]:
    """Each policy's decision on ``input``, in order. Pure; never raises for a
    policy's sake: an evaluation error is that policy's deny (fail closed)."""
    import celpy

    activation = {"input": celpy.json_to_cel(dict(input))}
    out = []
    for policy in policies:
        program = policy.program
        try:
            if program is None:  # a Policy built by hand: compile it here
                program = compile_policy(policy.to_dict(), source=policy.source).program
            value = program.evaluate(activation)
        except Exception as exc:  # noqa: BLE001 - any failure of a policy denies
            out.append(_failed(policy, _describe(exc)))
            continue
        if isinstance(value, celpy.CELEvalError):
            out.append(_failed(policy, _describe(value)))
        elif not isinstance(value, celpy.celtypes.BoolType):
            out.append(_failed(policy, f"the expression gave {type(value).__name__}, "
                                       "not a boolean"))
        else:
            out.append(Decision(policy.id, policy.enforcement, bool(value), policy.message))
    return out


def _describe(exc: BaseException) -> str:
    first = exc.args[0] if exc.args else exc
    return str(first).splitlines()[0][:300] if str(first) else type(exc).__name__


def _failed(policy: Policy, why: str) -> Decision:
    return Decision(policy.id, "deny", False,
                    f"{policy.message} (the policy could not be evaluated: {why}; denied, as "
                    "a policy that cannot decide fails closed)", error=why)


def denials(decisions: Iterable[Decision]) -> list[Decision]:
    return [d for d in decisions if not d.allowed and d.enforcement == "deny"]


def warnings(decisions: Iterable[Decision]) -> list[Decision]:
    return [d for d in decisions if not d.allowed and d.enforcement == "warn"]
