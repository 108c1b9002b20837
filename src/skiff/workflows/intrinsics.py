"""The 18 intrinsic functions of ASL (``States.Format(...)`` and friends), as AWS runs them.

The expression grammar is small (a call, its arguments: string literal, number, boolean,
null, path, nested call), so it is parsed here: there is no maintained library for it.
Where AWS differs from the spec, AWS wins (each noted where it is done):
MathAdd rounds each argument half up (Java's ``Math.round``), StringSplit splits on any of
the delimiter characters and drops empty pieces, StringToJson of a blank string is null,
Format prints objects as Java maps (``{a=1, b=[]}``), and a ``\\"`` inside a string literal
is refused at validation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import paths
from .errors import INTRINSIC_FAILURE, StatesError

# AWS's documented limits on intrinsic arguments (Step Functions developer guide).
MAX_RANGE_ITEMS = 1000
MAX_CODEC_CHARS = 10_000


class IntrinsicSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class PathArg:
    path: str


@dataclass(frozen=True)
class Literal:
    value: Any


_NAME = re.compile(r"States\.[A-Za-z0-9]+")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_WORD = re.compile(r"(true|false|null)\b")


def is_intrinsic(text: str) -> bool:
    return text.startswith("States.")


def parse(text: str) -> Call:
    p = _Parser(text)
    call = p.call()
    p.skip_ws()
    if p.i != len(text):
        raise IntrinsicSyntaxError(f"unexpected text after the call: {text[p.i:]!r}")
    return call


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def skip_ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def call(self) -> Call:
        self.skip_ws()
        m = _NAME.match(self.s, self.i)
        if not m:
            raise IntrinsicSyntaxError(f"expected States.<Function>( at {self.s[self.i:]!r}")
        name = m.group(0)
        if name not in FUNCTIONS:
            raise IntrinsicSyntaxError(f"unknown intrinsic function {name}")
        self.i = m.end()
        self.skip_ws()
        self.expect("(")
        args: list[Any] = []
        self.skip_ws()
        if self.peek() == ")":
            self.i += 1
            return Call(name, ())
        while True:
            args.append(self.arg())
            self.skip_ws()
            c = self.peek()
            self.i += 1
            if c == ")":
                return Call(name, tuple(args))
            if c != ",":
                raise IntrinsicSyntaxError(f"expected ',' or ')' in {self.s!r}")

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def expect(self, c: str) -> None:
        if self.peek() != c:
            raise IntrinsicSyntaxError(f"expected {c!r} at {self.s[self.i:]!r}")
        self.i += 1

    def arg(self) -> Any:
        self.skip_ws()
        c = self.peek()
        if c == "'":
            return Literal(self.string())
        if c == "$":
            return PathArg(self.path())
        if self.s.startswith("States.", self.i):
            return self.call()
        m = _NUMBER.match(self.s, self.i)
        if m:
            self.i = m.end()
            text = m.group(0)
            return Literal(float(text) if any(x in text for x in ".eE") else int(text))
        m = _WORD.match(self.s, self.i)
        if m:
            self.i = m.end()
            return Literal({"true": True, "false": False, "null": None}[m.group(1)])
        raise IntrinsicSyntaxError(f"unexpected argument at {self.s[self.i:]!r}")

    def string(self) -> str:
        self.i += 1
        out = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "\\":
                nxt = self.s[self.i + 1: self.i + 2]
                if nxt in ("'", "{", "}", "\\"):
                    # \{ \} stay escaped for Format, which decides what a brace means
                    out.append(c + nxt if nxt in "{}" else nxt)
                    self.i += 2
                    continue
                # AWS refuses \" (and other escapes) inside an intrinsic literal
                raise IntrinsicSyntaxError(f"illegal escape \\{nxt} in a string literal")
            if c == "'":
                self.i += 1
                return "".join(out)
            out.append(c)
            self.i += 1
        raise IntrinsicSyntaxError("unterminated string literal")

    def path(self) -> str:
        # a path runs to the next ',' or ')' outside brackets and quotes
        start, depth, quote = self.i, 0, ""
        while self.i < len(self.s):
            c = self.s[self.i]
            if quote:
                if c == quote:
                    quote = ""
            elif c in "'\"":
                quote = c
            elif c in "[(":
                depth += 1
            elif c in "])":
                if depth == 0:
                    break
                depth -= 1
            elif c == "," and depth == 0:
                break
            self.i += 1
        text = self.s[start:self.i].strip()
        try:
            paths.check(text)
        except paths.PathSyntaxError as e:
            raise IntrinsicSyntaxError(str(e)) from None
        return text


class Evaluator:
    """Evaluates intrinsic calls. ``rng`` is the execution's seeded random source, so the
    interpreter stays pure (MathRandom and UUID replay the same on every replay)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def __call__(self, text: str, value: Any, scope: paths.Scope) -> Any:
        try:
            call = _parse_cached(text)
        except IntrinsicSyntaxError as e:
            raise StatesError(INTRINSIC_FAILURE, f"Invalid intrinsic function {text!r}: {e}") \
                from None
        return self.evaluate(call, value, scope)

    def evaluate(self, call: Call, value: Any, scope: paths.Scope) -> Any:
        args = []
        for a in call.args:
            if isinstance(a, Call):
                args.append(self.evaluate(a, value, scope))
            elif isinstance(a, PathArg):
                args.append(paths.read(a.path, value, scope))
            else:
                args.append(a.value)
        fn = FUNCTIONS[call.name]
        try:
            return fn(self, *args)
        except StatesError:
            raise
        except TypeError as e:
            raise _fail(call.name, f"wrong number of arguments: {e}") from None


_CACHE: dict[str, Call] = {}


def _parse_cached(text: str) -> Call:
    call = _CACHE.get(text)
    if call is None:
        if len(_CACHE) > 4096:
            _CACHE.clear()
        call = _CACHE[text] = parse(text)
    return call


def _fail(name: str, message: str) -> StatesError:
    return StatesError(INTRINSIC_FAILURE, f"{name}: {message}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _integer(name: str, v: Any, what: str) -> int:
    if _is_number(v) and float(v).is_integer():
        return int(v)
    raise _fail(name, f"{what} must be an integer, got {paths.dumps(v)}")


def _array(name: str, v: Any) -> list:
    if not isinstance(v, list):
        raise _fail(name, f"expected an array, got {paths.dumps(v)}")
    return v


def _string(name: str, v: Any, what: str = "argument") -> str:
    if not isinstance(v, str):
        raise _fail(name, f"{what} must be a string, got {paths.dumps(v)}")
    return v


def _java_string(v: Any) -> str:
    """How AWS's Java runtime prints a value inside States.Format."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return repr(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_java_string(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_java_string(x) for x in v) + "]"
    return str(v)


def _format(ev: Evaluator, template: Any, *args: Any) -> str:
    name = "States.Format"
    template = _string(name, template, "the template")
    out, n, i = [], 0, 0
    while i < len(template):
        c = template[i]
        if c == "\\" and template[i + 1: i + 2] in ("{", "}"):
            out.append(template[i + 1])
            i += 2
            continue
        if template.startswith("{}", i):
            if n >= len(args):
                raise _fail(name, "more {} in the template than arguments")
            out.append(_java_string(args[n]))
            n += 1
            i += 2
            continue
        out.append(c)
        i += 1
    if n != len(args):
        raise _fail(name, f"the template has {n} placeholders for {len(args)} arguments")
    return "".join(out)


def _string_to_json(ev: Evaluator, s: Any) -> Any:
    s = _string("States.StringToJson", s)
    if not s.strip():
        return None
    try:
        return json.loads(s)
    except ValueError as e:
        raise _fail("States.StringToJson", f"not valid JSON: {e}") from None


def _json_to_string(ev: Evaluator, v: Any) -> str:
    return paths.dumps(v)


def _array_fn(ev: Evaluator, *args: Any) -> list:
    return list(args)


def _array_partition(ev: Evaluator, arr: Any, size: Any) -> list:
    name = "States.ArrayPartition"
    arr = _array(name, arr)
    size = _integer(name, size, "the chunk size")
    if size <= 0:
        raise _fail(name, f"the chunk size must be positive, got {size}")
    return [arr[i:i + size] for i in range(0, len(arr), size)]


def _json_eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _array_contains(ev: Evaluator, arr: Any, value: Any) -> bool:
    arr = _array("States.ArrayContains", arr)
    return any(_json_eq(x, value) for x in arr)


def _array_range(ev: Evaluator, start: Any, end: Any, step: Any) -> list:
    name = "States.ArrayRange"
    start, end = _integer(name, start, "start"), _integer(name, end, "end")
    step = _integer(name, step, "step")
    if step == 0:
        raise _fail(name, "step must not be 0")
    out = list(range(start, end + (1 if step > 0 else -1), step))
    if len(out) > MAX_RANGE_ITEMS:
        raise _fail(name, f"the range has {len(out)} items, more than {MAX_RANGE_ITEMS}")
    return out


def _array_get_item(ev: Evaluator, arr: Any, index: Any) -> Any:
    name = "States.ArrayGetItem"
    arr = _array(name, arr)
    index = _integer(name, index, "the index")
    if not 0 <= index < len(arr):
        raise _fail(name, f"index {index} out of bounds for an array of {len(arr)}")
    return arr[index]


def _array_length(ev: Evaluator, arr: Any) -> int:
    return len(_array("States.ArrayLength", arr))


def _array_unique(ev: Evaluator, arr: Any) -> list:
    out: list = []
    for x in _array("States.ArrayUnique", arr):
        if not any(_json_eq(x, y) for y in out):
            out.append(x)
    return out


def _base64_encode(ev: Evaluator, s: Any) -> str:
    name = "States.Base64Encode"
    s = _string(name, s)
    if len(s) > MAX_CODEC_CHARS:
        raise _fail(name, f"the input has more than {MAX_CODEC_CHARS} characters")
    return base64.b64encode(s.encode()).decode()


def _base64_decode(ev: Evaluator, s: Any) -> str:
    name = "States.Base64Decode"
    s = _string(name, s)
    if len(s) > MAX_CODEC_CHARS:
        raise _fail(name, f"the input has more than {MAX_CODEC_CHARS} characters")
    try:
        return base64.b64decode(s, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as e:
        raise _fail(name, f"not valid base64: {e}") from None


_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384",
           "SHA-512": "sha512"}


def _hash(ev: Evaluator, data: Any, algorithm: Any) -> str:
    name = "States.Hash"
    if data is None:
        raise _fail(name, "the data to hash must not be null")
    data = data if isinstance(data, str) else paths.dumps(data)
    if len(data) > MAX_CODEC_CHARS:
        raise _fail(name, f"the input has more than {MAX_CODEC_CHARS} characters")
    algo = _HASHES.get(_string(name, algorithm, "the algorithm"))
    if algo is None:
        raise _fail(name, f"unknown algorithm {algorithm!r}; use one of {', '.join(_HASHES)}")
    return hashlib.new(algo, data.encode()).hexdigest()


def _json_merge(ev: Evaluator, a: Any, b: Any, deep: Any) -> dict:
    name = "States.JsonMerge"
    if not isinstance(a, dict) or not isinstance(b, dict):
        raise _fail(name, "both arguments to merge must be JSON objects")
    if deep is not False:
        # AWS supports only the shallow merge (its docs: "the deep merge mode is not supported")
        raise _fail(name, "only a shallow merge (false) is supported")
    return {**a, **b}


def _math_random(ev: Evaluator, start: Any, end: Any, seed: Any = None) -> int:
    name = "States.MathRandom"
    start, end = _integer(name, round(start) if _is_number(start) else start, "start"), \
        _integer(name, round(end) if _is_number(end) else end, "end")
    if start >= end:
        raise _fail(name, "start must be less than end")
    rng = random.Random(_integer(name, seed, "seed")) if seed is not None else ev.rng
    return rng.randrange(start, end)


def _java_round(x: float) -> int:
    return math.floor(x + 0.5)


def _math_add(ev: Evaluator, a: Any, b: Any) -> int:
    name = "States.MathAdd"
    for v in (a, b):
        if not _is_number(v):
            raise _fail(name, f"expected numbers, got {paths.dumps(v)}")
    return _java_round(a) + _java_round(b)


def _string_split(ev: Evaluator, s: Any, delimiters: Any) -> list[str]:
    name = "States.StringSplit"
    s, delimiters = _string(name, s), _string(name, delimiters, "the delimiter")
    if not delimiters:
        return [s] if s else []
    pieces = re.split("[" + re.escape(delimiters) + "]", s)
    return [p for p in pieces if p]


def _uuid(ev: Evaluator) -> str:
    return str(uuid.UUID(int=ev.rng.getrandbits(128), version=4))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "States.Format": _format,
    "States.StringToJson": _string_to_json,
    "States.JsonToString": _json_to_string,
    "States.Array": _array_fn,
    "States.ArrayPartition": _array_partition,
    "States.ArrayContains": _array_contains,
    "States.ArrayRange": _array_range,
    "States.ArrayGetItem": _array_get_item,
    "States.ArrayLength": _array_length,
    "States.ArrayUnique": _array_unique,
    "States.Base64Encode": _base64_encode,
    "States.Base64Decode": _base64_decode,
    "States.Hash": _hash,
    "States.JsonMerge": _json_merge,
    "States.MathRandom": _math_random,
    "States.MathAdd": _math_add,
    "States.StringSplit": _string_split,
    "States.UUID": _uuid,
}
