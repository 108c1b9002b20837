"""A state machine definition: parsed once into frozen objects and validated, with
findings shaped like AWS's ValidateStateMachineDefinition diagnostics (code, message,
location naming the state and field, e.g. ``/States/Wait/Timestamp``).

The states keep their fields as written (``State.fields``): the interpreter reads the ASL
field names directly, which keeps this module a checker rather than a second schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import intrinsics, jsonata, paths, timestamps
from .choice import OPERATORS
from .errors import ALL, Diagnostic, InvalidDefinition
from .retry import Catcher, Retrier

JSONPATH = "JSONPath"
JSONATA = "JSONata"
STATE_TYPES = ("Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map")
TERMINAL = ("Succeed", "Fail")

# Fields only one query language may use (AWS refuses the others at creation).
JSONPATH_ONLY = ("InputPath", "Parameters", "ResultSelector", "ResultPath", "OutputPath",
                 "ItemsPath", "SecondsPath", "TimestampPath", "ErrorPath", "CausePath",
                 "MaxConcurrencyPath", "ToleratedFailureCountPath",
                 "ToleratedFailurePercentagePath", "TimeoutSecondsPath",
                 "HeartbeatSecondsPath")
JSONATA_ONLY = ("Arguments", "Output")

# The fields each state type takes; AWS refuses any other at creation.
_COMMON = {"Type", "Comment", "QueryLanguage"}
_FLOW = {"Next", "End"}
_IO = {"InputPath", "OutputPath", "Output", "Assign"}
_RESULT = {"Parameters", "ResultSelector", "ResultPath", "Arguments", "Retry", "Catch"}
FIELDS: dict[str, frozenset[str]] = {
    "Pass": frozenset(_COMMON | _FLOW | _IO | {"Parameters", "Result", "ResultPath"}),
    "Task": frozenset(_COMMON | _FLOW | _IO | _RESULT | {
        "Resource", "TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds",
        "HeartbeatSecondsPath", "Credentials"}),
    "Choice": frozenset(_COMMON | _IO | {"Choices", "Default"}),
    "Wait": frozenset(_COMMON | _FLOW | _IO | {"Seconds", "Timestamp", "SecondsPath",
                                              "TimestampPath"}),
    "Succeed": frozenset(_COMMON | {"InputPath", "OutputPath", "Output"}),
    "Fail": frozenset(_COMMON | {"Error", "Cause", "ErrorPath", "CausePath"}),
    "Parallel": frozenset(_COMMON | _FLOW | _IO | _RESULT | {"Branches"}),
    "Map": frozenset(_COMMON | _FLOW | _IO | _RESULT | {
        "ItemProcessor", "Iterator", "ItemsPath", "Items", "ItemSelector", "ItemReader",
        "ItemBatcher", "ResultWriter", "MaxConcurrency", "MaxConcurrencyPath",
        "ToleratedFailureCount", "ToleratedFailureCountPath", "ToleratedFailurePercentage",
        "ToleratedFailurePercentagePath", "Label"}),
}
MACHINE_FIELDS = frozenset({"StartAt", "States", "Comment", "Version", "TimeoutSeconds",
                            "QueryLanguage", "ProcessorConfig"})


@dataclass(frozen=True)
class State:
    name: str
    type: str
    query_language: str
    fields: Mapping[str, Any]
    retry: tuple[Retrier, ...] = ()
    catch: tuple[Catcher, ...] = ()
    # Parallel: its branches; Map: its item processor (one machine)
    branches: tuple[StateMachine, ...] = ()

    @property
    def next(self) -> str | None:
        return self.fields.get("Next")

    @property
    def end(self) -> bool:
        return bool(self.fields.get("End")) or self.type in TERMINAL

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.fields


@dataclass(frozen=True)
class StateMachine:
    start_at: str
    states: Mapping[str, State]
    query_language: str = JSONPATH
    comment: str | None = None
    timeout_seconds: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def parse(definition: Mapping[str, Any] | str) -> StateMachine:
    """Validate ``definition`` (a dict, or its JSON text) and freeze it; raises
    InvalidDefinition with every finding."""
    if isinstance(definition, str):
        try:
            definition = json.loads(definition)
        except ValueError as e:
            raise InvalidDefinition([Diagnostic("INVALID_JSON_DESCRIPTION",
                                                f"the definition is not JSON: {e}", "/")])\
                from None
    found: list[Diagnostic] = []
    if not isinstance(definition, Mapping):
        raise InvalidDefinition([Diagnostic("SCHEMA_VALIDATION_FAILED",
                                            "the definition must be a JSON object", "/")])
    top = definition.get("QueryLanguage", JSONPATH)
    if top not in (JSONPATH, JSONATA):
        found.append(Diagnostic("SCHEMA_VALIDATION_FAILED",
                                f"'QueryLanguage' must be JSONPath or JSONata, got {top!r}",
                                "/QueryLanguage"))
        top = JSONPATH
    machine = _machine(definition, "", top, top, found)
    if machine is not None:
        _check_names(machine, found)
    if found:
        raise InvalidDefinition(found)
    assert machine is not None
    return machine


def validate(definition: Mapping[str, Any] | str) -> list[Diagnostic]:
    """The findings for ``definition`` (empty when it is valid), like
    ValidateStateMachineDefinition."""
    try:
        parse(definition)
    except InvalidDefinition as e:
        return list(e.diagnostics)
    return []


def _machine(raw: Mapping[str, Any], where: str, default_ql: str, top_ql: str,
             found: list[Diagnostic]) -> StateMachine | None:
    if not isinstance(raw, Mapping):
        found.append(Diagnostic("SCHEMA_VALIDATION_FAILED", "a state machine is a JSON object",
                                where or "/"))
        return None
    for key in raw:
        if key not in MACHINE_FIELDS:
            found.append(Diagnostic("SCHEMA_VALIDATION_FAILED",
                                    f"Field '{key}' is not supported", where or "/"))
    missing = [k for k in ("States", "StartAt") if k not in raw]
    if missing:
        found.append(Diagnostic("SCHEMA_VALIDATION_FAILED",
                                f"These fields are required: [{', '.join(missing)}]",
                                where or "/"))
        return None
    states_raw = raw["States"]
    if not isinstance(states_raw, Mapping) or not states_raw:
        found.append(Diagnostic("SCHEMA_VALIDATION_FAILED",
                                "'States' must be a non-empty object", f"{where}/States"))
        return None
    states: dict[str, State] = {}
    for name, s in states_raw.items():
        st = _state(name, s, f"{where}/States/{name}", default_ql, top_ql, found)
        if st is not None:
            states[name] = st
    start = raw["StartAt"]
    if not isinstance(start, str):
        found.append(Diagnostic("SCHEMA_VALIDATION_FAILED", "'StartAt' must be a state name",
                                f"{where}/StartAt"))
        start = ""
    elif start not in states_raw:
        found.append(Diagnostic("MISSING_TRANSITION_TARGET",
                                f"StartAt names no state: {start!r}", f"{where}/StartAt"))
    for st in states.values():
        _check_transitions(st, states_raw, f"{where}/States/{st.name}", found)
    if states and not any(st.end for st in states.values()):
        found.append(Diagnostic("MISSING_END_STATE", "The workflow has no terminal state "
                                "(End: true, Succeed or Fail)", f"{where}/States"))
    return StateMachine(start_at=start, states=MappingProxyType(states),
                        query_language=default_ql, comment=raw.get("Comment"),
                        timeout_seconds=raw.get("TimeoutSeconds"), raw=raw)


# AWS: state names are 1 to 80 characters
MAX_STATE_NAME = 80


def _check_names(machine: StateMachine, found: list[Diagnostic]) -> None:
    """State names are unique in the whole machine, nested ones included (ASL spec), and
    at most 80 characters (AWS)."""
    seen: dict[str, str] = {}

    def walk(m: StateMachine, where: str) -> None:
        for name, st in m.states.items():
            at = f"{where}/States/{name}"
            if not 1 <= len(name) <= MAX_STATE_NAME:
                found.append(Diagnostic("INVALID_STATE_NAME", f"A state name has 1 to "
                                        f"{MAX_STATE_NAME} characters", at))
            if name in seen:
                found.append(Diagnostic("DUPLICATE_STATE_NAME",
                                        f"The state name {name!r} is also used at "
                                        f"{seen[name]}", at))
            else:
                seen[name] = at
            key = "Branches" if st.type == "Parallel" else "ItemProcessor"
            for i, b in enumerate(st.branches):
                walk(b, f"{at}/{key}/{i}" if st.type == "Parallel" else f"{at}/{key}")

    walk(machine, "")


def _check_transitions(st: State, names: Mapping[str, Any], where: str,
                       found: list[Diagnostic]) -> None:
    targets: list[tuple[str, str]] = []
    if st.next is not None:
        targets.append((st.next, f"{where}/Next"))
    if st.type == "Choice":
        choices = st.get("Choices")
        for i, rule in enumerate(choices if isinstance(choices, list) else ()):
            if isinstance(rule, Mapping) and "Next" in rule:
                targets.append((rule["Next"], f"{where}/Choices/{i}/Next"))
        if "Default" in st:
            targets.append((st.get("Default"), f"{where}/Default"))
    for i, c in enumerate(st.catch):
        targets.append((c.next, f"{where}/Catch/{i}/Next"))
    for target, loc in targets:
        if not isinstance(target, str):
            found.append(Diagnostic("SCHEMA_VALIDATION_FAILED", "a transition names a state",
                                    loc))
        elif target not in names:
            found.append(Diagnostic("MISSING_TRANSITION_TARGET",
                                    f"Missing 'Next' target: {target}", loc))


def _state(name: str, s: Any, where: str, default_ql: str, top_ql: str,
           found: list[Diagnostic]) -> State | None:
    def bad(msg: str, at: str = "", code: str = "SCHEMA_VALIDATION_FAILED") -> None:
        found.append(Diagnostic(code, msg, where + at))

    if not isinstance(s, Mapping):
        bad("a state must be a JSON object")
        return None
    typ = s.get("Type")
    if typ not in STATE_TYPES:
        bad(f"'Type' must be one of {', '.join(STATE_TYPES)}, got {typ!r}", "/Type")
        return None
    for key in s:
        if key not in FIELDS[typ]:
            bad(f"Field '{key}' is not supported for a {typ} state", f"/{key}")
    ql = s.get("QueryLanguage", default_ql)
    if ql not in (JSONPATH, JSONATA):
        bad(f"'QueryLanguage' must be JSONPath or JSONata, got {ql!r}", "/QueryLanguage")
        ql = default_ql
    if top_ql == JSONATA and ql == JSONPATH:
        bad("'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine")
    if typ not in TERMINAL and typ != "Choice" and bool(s.get("End")) == ("Next" in s):
        bad("a state has exactly one of 'Next' or 'End': true")
    for key in JSONPATH_ONLY if ql == JSONATA else JSONATA_ONLY:
        if key in s:
            bad(f"The field '{key}' is not supported with QueryLanguage {ql}", f"/{key}")
    if ql == JSONPATH:
        for key in ("Parameters", "ResultSelector", "ItemSelector"):
            if key in s:
                _check_template(s[key], f"{where}/{key}", found)
        if "Assign" in s:
            _check_template(s["Assign"], f"{where}/Assign", found)
        for key in ("InputPath", "OutputPath", "ItemsPath", "SecondsPath", "TimestampPath",
                    "ErrorPath", "CausePath", "ResultPath", "MaxConcurrencyPath",
                    "ToleratedFailureCountPath", "ToleratedFailurePercentagePath",
                    "TimeoutSecondsPath", "HeartbeatSecondsPath"):
            if key not in s:
                continue
            v = s[key]
            nullable = key in ("InputPath", "OutputPath", "ResultPath")
            if not isinstance(v, str) and not (nullable and v is None):
                bad(f"'{key}' must be a path string" + (" or null" if nullable else ""),
                    f"/{key}")
                continue
            if key in ("ErrorPath", "CausePath") and intrinsics.is_intrinsic(v):
                try:
                    intrinsics.parse(v)
                except intrinsics.IntrinsicSyntaxError as e:
                    bad(str(e), f"/{key}")
                continue
            if isinstance(v, str) and key != "ResultPath":
                try:
                    paths.check(v)
                except paths.PathSyntaxError as e:
                    bad(str(e), f"/{key}")
        if isinstance(s.get("ResultPath"), str):
            try:
                paths.check_reference(s["ResultPath"])
            except paths.PathSyntaxError as e:
                bad(str(e), "/ResultPath")
    else:
        _check_jsonata(s, where, found)
    if typ == "Wait":
        modes = [k for k in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if k in s]
        if len(modes) != 1:
            bad("a Wait state has exactly one of Seconds, Timestamp, SecondsPath, TimestampPath")
        ts = s.get("Timestamp")
        if "Timestamp" in s and not (ql == JSONATA and jsonata.is_expression(ts)) \
                and timestamps.parse(ts) is None:
            bad("String does not match RFC3339 timestamp", "/Timestamp")
    if typ == "Choice":
        choices = s.get("Choices")
        if not isinstance(choices, list) or not choices:
            bad("'Choices' must be a non-empty array", "/Choices")
        else:
            for i, rule in enumerate(choices):
                _check_rule(rule, ql, f"{where}/Choices/{i}", found, top=True)
    _check_values(typ, s, ql, where, found)
    for key in ("Retry", "Catch"):
        if key in s and not isinstance(s[key], list):
            bad(f"'{key}' must be an array", f"/{key}")
    _check_assigns(s, where, found)
    for key in ("Retry", "Catch"):
        rules = s.get(key) if isinstance(s.get(key), list) else []
        for i, r in enumerate(rules[:-1]):
            if isinstance(r, Mapping) and ALL in (r.get("ErrorEquals") or ()):
                bad(f"States.ALL must be in the last {'Retrier' if key == 'Retry' else 'Catcher'}",
                    f"/{key}/{i}/ErrorEquals")
    retriers, catchers = [], []
    for i, r in enumerate(s.get("Retry") if isinstance(s.get("Retry"), list) else ()):
        if _check_error_equals(r, f"{where}/Retry/{i}", found) and \
                _check_retrier(r, f"{where}/Retry/{i}", found):
            retriers.append(Retrier.parse(r))
    for i, c in enumerate(s.get("Catch") if isinstance(s.get("Catch"), list) else ()):
        if _check_error_equals(c, f"{where}/Catch/{i}", found):
            if "Next" not in c:
                bad("a Catcher needs 'Next'", f"/Catch/{i}")
                continue
            catchers.append(Catcher.parse(c))
    branches: list[StateMachine] = []
    if typ == "Parallel":
        raw_branches = s.get("Branches")
        for i, b in enumerate(raw_branches if isinstance(raw_branches, list) else ()):
            m = _machine(b, f"{where}/Branches/{i}", top_ql, top_ql, found)
            if m is not None:
                branches.append(m)
        if not isinstance(raw_branches, list) or not raw_branches:
            bad("'Branches' must be a non-empty array", "/Branches")
    if typ == "Map":
        proc = s.get("ItemProcessor", s.get("Iterator"))
        if not isinstance(proc, Mapping):
            bad("a Map state needs an 'ItemProcessor'", "/ItemProcessor")
        else:
            m = _machine(proc, f"{where}/ItemProcessor", top_ql, top_ql, found)
            if m is not None:
                branches.append(m)
    return State(name=name, type=typ, query_language=ql, fields=MappingProxyType(dict(s)),
                 retry=tuple(retriers), catch=tuple(catchers), branches=tuple(branches))


def _check_assigns(s: Mapping[str, Any], where: str, found: list[Diagnostic]) -> None:
    """Assign, wherever it appears (state, Choice rule, Catcher), is an object."""
    places: list[tuple[Any, str]] = [(s, where)]
    for key in ("Choices", "Catch"):
        if isinstance(s.get(key), list):
            places += [(r, f"{where}/{key}/{i}") for i, r in enumerate(s[key])]
    for holder, at in places:
        if isinstance(holder, Mapping) and "Assign" in holder and \
                not isinstance(holder["Assign"], Mapping):
            found.append(Diagnostic("SCHEMA_VALIDATION_FAILED", "'Assign' must be an object",
                                    f"{at}/Assign"))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_values(typ: str, s: Mapping[str, Any], ql: str, where: str,
                  found: list[Diagnostic]) -> None:
    """The literal values AWS checks at creation (a JSONata expression is checked when
    it runs)."""
    def bad(msg: str, key: str) -> None:
        found.append(Diagnostic("SCHEMA_VALIDATION_FAILED", msg, f"{where}/{key}"))

    def literal(key: str) -> bool:
        return key in s and not (ql == JSONATA and jsonata.is_expression(s[key]))

    if "Next" in s and not isinstance(s["Next"], str):
        bad("'Next' must be a state name", "Next")
    if typ == "Task" and not isinstance(s.get("Resource"), str):
        bad("a Task state needs a 'Resource' string", "Resource")
    for key in ("TimeoutSeconds", "HeartbeatSeconds"):
        if literal(key) and (not _is_int(s[key]) or s[key] <= 0):
            bad(f"'{key}' must be a positive integer", key)
    if literal("TimeoutSeconds") and literal("HeartbeatSeconds") and \
            _is_int(s["TimeoutSeconds"]) and _is_int(s["HeartbeatSeconds"]) and \
            s["HeartbeatSeconds"] >= s["TimeoutSeconds"]:
        bad("'HeartbeatSeconds' must be smaller than 'TimeoutSeconds'", "HeartbeatSeconds")
    if typ == "Wait" and literal("Seconds") and (not _is_int(s["Seconds"]) or s["Seconds"] < 0):
        bad("'Seconds' must be a non-negative integer", "Seconds")
    if typ == "Map":
        if literal("MaxConcurrency") and (not _is_int(s["MaxConcurrency"])
                                          or s["MaxConcurrency"] < 0):
            bad("'MaxConcurrency' must be a non-negative integer", "MaxConcurrency")
        if literal("ToleratedFailureCount") and (not _is_int(s["ToleratedFailureCount"])
                                                 or s["ToleratedFailureCount"] < 0):
            bad("'ToleratedFailureCount' must be a non-negative integer",
                "ToleratedFailureCount")
        if literal("ToleratedFailurePercentage") and (
                not _is_number(s["ToleratedFailurePercentage"])
                or not 0 <= s["ToleratedFailurePercentage"] <= 100):
            bad("'ToleratedFailurePercentage' must be between 0 and 100",
                "ToleratedFailurePercentage")
    if typ == "Map":
        for key in ("ItemReader", "ResultWriter"):
            if key in s:
                # they read and write S3 on AWS; a silent inline run would be wrong
                found.append(Diagnostic("UNSUPPORTED_FEATURE",
                                        f"'{key}' is not supported: give the Map its items "
                                        f"inline (ItemsPath or Items)", f"{where}/{key}"))
    if typ == "Fail":
        for a, b in (("Error", "ErrorPath"), ("Cause", "CausePath")):
            if a in s and b in s:
                bad(f"'{a}' and '{b}' exclude each other", b)


def _check_retrier(r: Mapping[str, Any], where: str, found: list[Diagnostic]) -> bool:
    problems = []
    if "IntervalSeconds" in r and (not _is_int(r["IntervalSeconds"]) or
                                   r["IntervalSeconds"] < 1):
        problems.append(("IntervalSeconds", "must be a positive integer"))
    if "MaxAttempts" in r and (not _is_int(r["MaxAttempts"]) or r["MaxAttempts"] < 0):
        problems.append(("MaxAttempts", "must be a non-negative integer"))
    if "BackoffRate" in r and (not _is_number(r["BackoffRate"]) or r["BackoffRate"] < 1):
        problems.append(("BackoffRate", "must be a number of at least 1.0"))
    if "MaxDelaySeconds" in r and (not _is_int(r["MaxDelaySeconds"]) or
                                   r["MaxDelaySeconds"] < 1):
        problems.append(("MaxDelaySeconds", "must be a positive integer"))
    if r.get("JitterStrategy", "NONE") not in ("NONE", "FULL"):
        problems.append(("JitterStrategy", "must be FULL or NONE"))
    for key, msg in problems:
        found.append(Diagnostic("SCHEMA_VALIDATION_FAILED", f"'{key}' {msg}",
                                f"{where}/{key}"))
    return not problems


def _check_error_equals(r: Any, where: str, found: list[Diagnostic]) -> bool:
    if not isinstance(r, Mapping) or not isinstance(r.get("ErrorEquals"), list) \
            or not r["ErrorEquals"]:
        found.append(Diagnostic("SCHEMA_VALIDATION_FAILED",
                                "'ErrorEquals' must be a non-empty array", where))
        return False
    ee = r["ErrorEquals"]
    if ALL in ee and len(ee) > 1:
        found.append(Diagnostic("SCHEMA_VALIDATION_FAILED",
                                "States.ALL must appear alone in 'ErrorEquals'",
                                f"{where}/ErrorEquals"))
        return False
    return True


def _check_template(tmpl: Any, where: str, found: list[Diagnostic]) -> None:
    if isinstance(tmpl, Mapping):
        for k, v in tmpl.items():
            if isinstance(k, str) and k.endswith(".$"):
                if not isinstance(v, str) or not _valid_path_or_call(v):
                    found.append(Diagnostic(
                        "SCHEMA_VALIDATION_FAILED",
                        f"The value for the field '{k}' must be a valid JSONPath or a valid "
                        f"intrinsic function call", where))
            else:
                _check_template(v, where, found)
    elif isinstance(tmpl, list):
        for v in tmpl:
            _check_template(v, where, found)


def _valid_path_or_call(v: str) -> bool:
    if intrinsics.is_intrinsic(v):
        try:
            intrinsics.parse(v)
        except intrinsics.IntrinsicSyntaxError:
            return False
        return True
    try:
        paths.check(v)
    except paths.PathSyntaxError:
        return False
    return True


def _check_jsonata(s: Mapping[str, Any], where: str, found: list[Diagnostic]) -> None:
    def walk(v: Any, at: str) -> None:
        if jsonata.is_expression(v):
            why = jsonata.check(jsonata.body(v))
            if why is not None:
                found.append(Diagnostic("SCHEMA_VALIDATION_FAILED",
                                        f"invalid JSONata expression {v!r}: {why}", at))
        elif isinstance(v, Mapping):
            for k, x in v.items():
                walk(x, f"{at}/{k}")
        elif isinstance(v, list):
            for x in v:
                walk(x, at)

    for key in ("Arguments", "Output", "Assign", "Items", "Seconds", "Timestamp", "Error",
                "Cause", "MaxConcurrency", "ToleratedFailureCount",
                "ToleratedFailurePercentage", "TimeoutSeconds", "HeartbeatSeconds",
                "ItemSelector"):
        if key in s:
            walk(s[key], f"{where}/{key}")


def _operand_problem(op: str, v: Any) -> str | None:
    if op.endswith("Path"):
        if not isinstance(v, str):
            return "takes a path string"
        try:
            paths.check(v)
        except paths.PathSyntaxError as e:
            return str(e)
        return None
    if op.startswith("Is"):
        return None if isinstance(v, bool) else "takes true or false"
    if op.startswith("Boolean"):
        return None if isinstance(v, bool) else "takes a boolean"
    if op.startswith("Numeric"):
        return None if _is_number(v) else "takes a number"
    if op.startswith("Timestamp"):
        return None if timestamps.parse(v) is not None else "takes an ISO-8601 timestamp"
    return None if isinstance(v, str) else "takes a string"  # String*


def _check_rule(rule: Any, ql: str, where: str, found: list[Diagnostic], *,
                top: bool) -> None:
    if not isinstance(rule, Mapping):
        found.append(Diagnostic("SCHEMA_VALIDATION_FAILED", "a Choice rule is an object", where))
        return
    if top and "Next" not in rule:
        found.append(Diagnostic("SCHEMA_VALIDATION_FAILED", "a Choice rule needs 'Next'", where))
    if ql == JSONATA:
        if "Condition" not in rule:
            found.append(Diagnostic("SCHEMA_VALIDATION_FAILED",
                                    "a JSONata Choice rule needs 'Condition'", where))
        return
    if "And" in rule or "Or" in rule:
        subs = rule.get("And", rule.get("Or"))
        if not isinstance(subs, list) or not subs:
            found.append(Diagnostic("SCHEMA_VALIDATION_FAILED",
                                    "'And'/'Or' take a non-empty array", where))
            return
        for i, r in enumerate(subs):
            _check_rule(r, ql, f"{where}/{i}", found, top=False)
        return
    if "Not" in rule:
        _check_rule(rule["Not"], ql, f"{where}/Not", found, top=False)
        return
    ops = [k for k in rule if k in OPERATORS]
    if len(ops) != 1:
        found.append(Diagnostic("SCHEMA_VALIDATION_FAILED",
                                "a Choice rule needs exactly one comparison operator", where))
    for op in ops:
        why = _operand_problem(op, rule[op])
        if why:
            found.append(Diagnostic("SCHEMA_VALIDATION_FAILED", f"'{op}' {why}",
                                    f"{where}/{op}"))
    if "Variable" in rule:
        try:
            if not isinstance(rule["Variable"], str):
                raise paths.PathSyntaxError("'Variable' must be a path string")
            paths.check(rule["Variable"])
        except paths.PathSyntaxError as e:
            found.append(Diagnostic("SCHEMA_VALIDATION_FAILED", str(e), f"{where}/Variable"))


def task_resources(machine: StateMachine) -> set[str]:
    """Every Task ``Resource`` in ``machine``, nested machines included: what a deploy
    checks against the apps that exist."""
    out: set[str] = set()
    for st in machine.states.values():
        if st.type == "Task" and isinstance(st.get("Resource"), str):
            out.add(st.get("Resource"))
        for b in st.branches:
            out |= task_resources(b)
    return out
