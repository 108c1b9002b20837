"""QueryLanguage JSONata: ``{% ... %}`` expressions, ``$states``, variables, and the
functions AWS adds to the language.

The evaluator is jsonata-python (a maintained port of jsonata-js). What this module adds:

- AWS's extra functions: ``$partition``, ``$range``, ``$hash``, ``$random`` (seedable),
  ``$uuid``, ``$parse``; ``$now()``/``$millis()`` read the event's time, never the clock,
  and ``$random``/``$uuid`` the execution's seeded source, so the interpreter stays pure;
- undefined and null kept apart (the library can report both as None): a field whose
  expression yields nothing fails with States.QueryEvaluationError, as on AWS;
- errors of the library mapped to States.QueryEvaluationError with AWS's wording.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Mapping
from typing import Any

from jsonata import Functions, JException, Jsonata
from jsonata.utils import Utils

from .errors import QUERY_EVALUATION_ERROR, StatesError
from .intrinsics import _HASHES

UNDEFINED = object()

# Evaluation steps one expression may take. A definition is hostile input: a recursive
# JSONata function can loop for ever (tail calls do not grow the stack). A step budget,
# unlike the library's wall-clock Timebox, stops it at the same point on every replay.
# 200,000 steps is about 0.3 s here; the AWS cases need at most a few hundred.
MAX_STEPS = 200_000


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("{%") and value.endswith("%}") \
        and len(value) >= 4


def body(value: str) -> str:
    return value[2:-2].strip()


_COMPILED: dict[str, Jsonata] = {}


def compile_expression(text: str) -> Jsonata:
    expr = _COMPILED.get(text)
    if expr is None:
        expr = Jsonata(text)
        expr.set_output_convert_nulls(False)
        if len(_COMPILED) > 4096:
            _COMPILED.clear()
        _COMPILED[text] = expr
    return expr


def check(text: str) -> str | None:
    """Why ``text`` is not a JSONata expression, or None when it parses."""
    try:
        compile_expression(text)
    except JException as e:
        return str(e)
    except Exception as e:  # the parser raises plain errors on some inputs
        return str(e)
    return None


def _to_jsonata(value: Any) -> Any:
    if value is None:
        return Utils.NULL_VALUE
    return value


def _from_jsonata(value: Any) -> Any:
    if value is None:
        return UNDEFINED
    value = Utils.convert_nulls(value)
    if not _is_json(value):
        return _Unsupported  # a function, or something holding one
    return _plain(value)


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


class _Unsupported:
    """A result that is not JSON (a function)."""


def _sequence(items: Any) -> list:
    seq = Utils.create_sequence()
    seq.extend(items)
    return seq


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


class Evaluator:
    """Evaluates JSONata for one state: ``states`` is the ``$states`` object (input,
    context, result, errorOutput), ``variables`` the workflow variables in scope."""

    def __init__(self, rng: random.Random, now_millis: int) -> None:
        self.rng = rng
        self.now_millis = now_millis

    def _bindings(self, states: Mapping[str, Any], variables: Mapping[str, Any]) -> dict:
        b: dict[str, Any] = {k: _to_jsonata(v) for k, v in variables.items()}
        b["states"] = {k: _to_jsonata(v) for k, v in states.items()}
        rng = self.rng
        now = self.now_millis
        b["partition"] = Jsonata.JLambda(
            lambda arr, size: [arr[i:i + int(size)] for i in range(0, len(arr), int(size))])
        # a JSONata sequence, so a one-item range is that item, as AWS answers
        b["range"] = Jsonata.JLambda(
            lambda start, end, step: _sequence(range(int(start),
                                                     int(end) + (1 if step > 0 else -1),
                                                     int(step))))
        b["hash"] = Jsonata.JLambda(
            lambda data, algo: hashlib.new(_HASHES[algo], str(data).encode()).hexdigest())
        b["random"] = Jsonata.JLambda(
            lambda seed=None: (random.Random(seed) if seed is not None else rng).random())
        b["uuid"] = Jsonata.JLambda(lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        b["parse"] = Jsonata.JLambda(lambda text: _to_jsonata(json.loads(text)))
        steps = [0]

        def count(expr: Any, input: Any, env: Any) -> None:
            steps[0] += 1
            if steps[0] > MAX_STEPS:
                raise StatesError(QUERY_EVALUATION_ERROR,
                                  f"The expression took more than {MAX_STEPS} evaluation "
                                  f"steps; it was stopped")

        b["__evaluate_entry"] = count  # the library's per-step hook, bound per evaluation
        b["millis"] = Jsonata.JLambda(lambda: now)
        b["now"] = Jsonata.JLambda(
            lambda picture=None, timezone=None: Functions.datetime_from_millis(now, picture,
                                                                               timezone))
        return b

    def evaluate(self, text: str, states: Mapping[str, Any], variables: Mapping[str, Any],
                 *, field: str, state: str) -> Any:
        """The value of expression ``text`` (without the ``{% %}``); raises
        States.QueryEvaluationError when it fails or yields nothing."""
        try:
            expr = compile_expression(text)
            raw = expr.evaluate(_to_jsonata(states.get("input")),
                                self._bindings(states, variables))
        except StatesError as e:
            raise StatesError(e.error, f"The JSONata expression '{text}' specified for the "
                                       f"field '{field}' threw an error during evaluation. "
                                       f"{e.cause}") from None
        except JException as e:
            raise StatesError(QUERY_EVALUATION_ERROR,
                              f"The JSONata expression '{text}' specified for the field "
                              f"'{field}' threw an error during evaluation. {e}") from None
        except Exception as e:  # the port raises plain errors for some bad arguments
            raise StatesError(QUERY_EVALUATION_ERROR,
                              f"The JSONata expression '{text}' specified for the field "
                              f"'{field}' threw an error during evaluation. {e}") from None
        value = _from_jsonata(raw)
        if value is UNDEFINED:
            raise StatesError(QUERY_EVALUATION_ERROR,
                              f"The JSONata expression '{text}' specified for the field "
                              f"'{field}' returned nothing (undefined).")
        if value is _Unsupported:
            raise StatesError(QUERY_EVALUATION_ERROR,
                              f"The JSONata expression '{text}' specified for the field "
                              f"'{field}' returned an unsupported result type.")
        return value

    def template(self, tmpl: Any, states: Mapping[str, Any], variables: Mapping[str, Any],
                 *, field: str, state: str) -> Any:
        """A JSONata-mode field (Arguments, Output, Assign, ...): every ``{% %}`` string in
        it evaluated, everything else kept as written."""
        if is_expression(tmpl):
            return self.evaluate(body(tmpl), states, variables, field=field, state=state)
        if isinstance(tmpl, dict):
            return {k: self.template(v, states, variables, field=f"{field}/{k}", state=state)
                    for k, v in tmpl.items()}
        if isinstance(tmpl, list):
            return [self.template(v, states, variables, field=field, state=state)
                    for v in tmpl]
        return tmpl
