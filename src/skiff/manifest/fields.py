"""The value types of skiff.yaml. Each one states what it expects in the
author's words, so a bad value is reported as ``expected <that>, got <value>``
whichever pydantic check failed (type, pattern or bound)."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from annotated_types import Ge, Interval
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Strict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

ERROR_TYPE = "skiff"
"""Pydantic error type of every error Skiff raises itself; its ctx carries
``expected`` or ``message``, optionally ``at`` (a loc suffix) and ``value``."""


_UNSET: Any = object()


def invalid(
    expected: str | None = None,
    *,
    message: str | None = None,
    at: tuple[str | int, ...] = (),
    value: Any = _UNSET,
) -> PydanticCustomError:
    """An error for errors.py to format: ``expected ..., got <value>`` or a
    bare ``message``; ``at`` moves it below the validated object, ``value``
    replaces the input shown (needed when ``at`` points elsewhere)."""
    ctx: dict[str, Any] = {"at": at}
    if value is not _UNSET:
        ctx["value"] = value
    if message is not None:
        ctx["message"] = message
    else:
        ctx["expected"] = expected
    return PydanticCustomError(ERROR_TYPE, "invalid manifest value", ctx)


def expect(expected: str) -> WrapValidator:
    """Replace any failure of the wrapped type by one plain-language expectation."""

    def validate(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise invalid(expected) from None

    return WrapValidator(validate)


# --- durations ---------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_PATTERN = r"^\d+(\.\d+)?(ms|s|m|h)$"


# Longer is "never" for every duration in a manifest; beyond it, timers and date
# arithmetic overflow (a 400-digit YAML integer did not even fit a float).
MAX_DURATION = 10 * 365 * 86400.0


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like "500ms", "30s", "5m", "1h"."""
    if isinstance(value, bool):  # YAML `yes` is a bool, and bool is an int
        raise ValueError("not a duration")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str) and (match := _DURATION.match(value.strip())):
            seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
        else:
            raise ValueError("not a duration")
    except OverflowError:
        raise ValueError("not a duration") from None
    if not seconds <= MAX_DURATION:  # also NaN and infinity
        raise ValueError("not a duration")
    return seconds


def parse_duration_or_zero(value: Any) -> Any:
    """A duration where 0 is meaningful (e.g. no batching window)."""
    if value in (0, "0", "0s"):
        return 0.0
    return parse_duration(value)


def _duration_schema(le: float | None = None, *, zero: bool = False) -> WithJsonSchema:
    number: dict[str, Any] = {"type": "number", "minimum": 0} if zero else \
        {"type": "number", "exclusiveMinimum": 0}
    if le is not None:
        number["maximum"] = le
    return WithJsonSchema({"anyOf": [number, {"type": "string", "pattern": DURATION_PATTERN}]})


def _duration_expected(bound: str) -> WrapValidator:
    return expect(f'a duration {bound} (a number of seconds, or a string like "500ms", '
                  f'"30s", "5m", "1h")')


Duration = Annotated[float, BeforeValidator(parse_duration), Interval(gt=0),
                     _duration_schema(), _duration_expected("above 0")]
BatchWindow = Annotated[float, BeforeValidator(parse_duration_or_zero), Interval(ge=0, le=300),
                        _duration_schema(300, zero=True),
                        _duration_expected("from 0 to 300 seconds")]
Timeout = Annotated[float, BeforeValidator(parse_duration), Interval(gt=0, le=900),
                    _duration_schema(900), _duration_expected("above 0 and at most 900 seconds")]


# --- numbers -----------------------------------------------------------------
# Strict: "256", 256.0 and `true` are not integers in a manifest.

NonNegativeInt = Annotated[int, Strict(), Ge(0), expect("an integer >= 0")]
PositiveInt = Annotated[int, Strict(), Ge(1), expect("an integer >= 1")]
MemoryMB = Annotated[int, Strict(), Interval(ge=32, le=10240),
                     expect("an integer from 32 to 10240")]
# Only ever used as `Concurrency | None`, where null means "automatic".
Concurrency = Annotated[int, Strict(), Interval(ge=1, le=1000),
                        expect("an integer from 1 to 1000, or null for automatic")]
# Objectives below 50 % are not objectives, and 100 % leaves no error budget to burn
# (every failed request would page at an infinite burn rate).
Objective = Annotated[float, Strict(), Interval(ge=50, lt=100),
                      expect("a percentage from 50 up to (not including) 100, e.g. 99.5")]
LatencyMs = Annotated[float, Strict(), Interval(gt=0, le=900_000),
                      expect("milliseconds above 0 and at most 900000 (the longest timeout)")]


# --- strings -----------------------------------------------------------------

Text = Annotated[str, expect("a string")]
DiskMB = Annotated[int, Strict(), Interval(ge=1, le=102400),
                   expect("an integer from 1 to 102400 (MiB)")]
# One build or release step: a shell command line, run with /bin/sh -c in the app's code
SetupCommand = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=4096),
                         expect("a command line such as \"python manage.py migrate\"")]

# A DNS label (it becomes part of host names), hence no trailing "-".
NAME_PATTERN = r"^[a-z](?:[a-z0-9-]{0,39}[a-z0-9])?$"
AppName = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN),
    expect('1 to 41 lowercase letters, digits or "-", starting with a letter '
           'and not ending with "-"'),
]

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
EnvName = Annotated[
    str,
    StringConstraints(pattern=ENV_NAME_PATTERN),
    expect('a variable name of letters, digits and "_", not starting with a digit'),
]


def _scalar_to_str(value: Any) -> Any:
    # YAML turns `PORT: 8080` and `DEBUG: yes` into int and bool; the process
    # environment only holds strings, spelled the way YAML would.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


EnvValue = Annotated[
    str, BeforeValidator(_scalar_to_str), expect("a string, number or boolean")
]
EnvVars = Annotated[
    dict[EnvName, EnvValue],
    WithJsonSchema({
        "type": "object",
        "propertyNames": {"pattern": ENV_NAME_PATTERN},
        "additionalProperties": {"type": ["string", "number", "boolean"]},
    }),
]

#: Names every instance gets from the platform (skiff.runtime.environment), reserved
#: as Lambda reserves them: an app cannot set them in spec.env or spec.secrets.
RESERVED_ENV = frozenset({
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "LAMBDA_TASK_ROOT", "_HANDLER", "K_SERVICE", "K_REVISION", "K_CONFIGURATION", "SKIFF_APP",
    "SKIFF_REVISION", "SKIFF_DATA_DIR",
})

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# "module:attribute" (with "()" an app factory, called once at init), or Lambda's (and
# SAM's) "file.function", the file possibly in a directory ("src/app.handler")
HANDLER_PATTERN = (rf"^({_IDENT}(\.{_IDENT})*:{_IDENT}(\(\))?"
                   rf"|({_IDENT}/)*{_IDENT}(\.{_IDENT})*\.{_IDENT})$")
Handler = Annotated[
    str,
    StringConstraints(pattern=HANDLER_PATTERN),
    expect('"module:attribute" or Lambda\'s "file.function", e.g. "app:handler", '
           '"pkg.mod:app", "app.lambda_handler" or an app factory "flaskr:create_app()"'),
]

AppKind = Annotated[
    Literal["lambda", "asgi", "wsgi", "static"],
    expect('one of "lambda", "asgi", "wsgi", "static"'),
]

PATH_PATTERN = r"^/[^\s?#]*$"
RoutePath = Annotated[
    str, StringConstraints(pattern=PATH_PATTERN), expect('a path prefix starting with "/"')
]
MountPath = Annotated[
    str, StringConstraints(pattern=PATH_PATTERN), expect('a mount path starting with "/"')
]

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_PATTERN = rf"^{_LABEL}(\.{_LABEL})*$"
HostName = Annotated[
    str,
    StringConstraints(pattern=HOST_PATTERN, max_length=253),
    AfterValidator(str.lower),  # host names are case-insensitive; compare them lowercased
    expect('a host name like "food.example.com"'),
]


def _port_in_range(pattern: str) -> str:
    _, _, port = pattern.partition(":")
    if port and not 1 <= int(port) <= 65535:
        raise ValueError("port out of range")
    return pattern


EGRESS_PATTERN = rf"^(\*|(\*\.)?{_LABEL}(\.{_LABEL})*)(:[0-9]{{1,5}})?$"
EgressRule = Annotated[
    str,
    StringConstraints(pattern=EGRESS_PATTERN),
    AfterValidator(_port_in_range),
    expect('a host pattern with an optional port, like "api.example.com" or '
           '"*.internal.corp:443"'),
]

SECRET_REF_PATTERN = r"^secret://[a-z0-9][a-z0-9._-]*(#[1-9][0-9]*)?$"
SecretRef = Annotated[
    str,
    StringConstraints(pattern=SECRET_REF_PATTERN),
    expect('a secret reference like "secret://orders-db"'),
]


def _relative_dir(value: str) -> str:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts or "\\" in value:
        raise ValueError("not a relative directory")
    return path.as_posix()  # "./public/" and "public" are the same revision


def _dir_exists(value: str, info: ValidationInfo) -> str:
    base_dir = (info.context or {}).get("base_dir")
    if base_dir is not None and not (Path(base_dir) / value).is_dir():
        raise invalid("an existing directory relative to the app directory")
    return value


StaticDir = Annotated[
    str,
    AfterValidator(_relative_dir),
    expect('a directory inside the app (a relative path without "..")'),
    # Outside expect(): a missing directory deserves its own message.
    AfterValidator(_dir_exists),
]
