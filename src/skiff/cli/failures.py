"""The one place the CLI turns a failure into what a person reads: a message, a
stable code and a hint, never a Python traceback for a user's mistake.

    SkiffError (raised by a command, or the server's error body) → its code, message
    click UsageError (bad flag, missing argument)                → bad_usage + --help hint
    OSError (a file that is not there, not readable)             → os_error
    anything else                                                → internal_error: a bug,
                                                                   SKIFF_DEBUG=1 shows it
Exit codes: 0 ok, 1 an error, 2 bad usage (or the error's own ``exit_code``), 130 ^C."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from skiff.errors import SkiffError

# typer >= 0.29 carries its own copy of click: take its classes from typer's BadParameter
# rather than from `import click`, which may be another copy whose classes never match
_CLICK = {c.__name__: c for c in typer.BadParameter.__mro__}
UsageError: type[Exception] = _CLICK["UsageError"]
ClickException: type[Exception] = _CLICK["ClickException"]


def parse_json(text: str, what: str) -> Any:
    """``text`` as JSON, or a ``bad_json`` error that says where it broke and how to quote."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SkiffError(f"{what} is not JSON ({exc}): {text[:60]!r}; a string needs its "
                         "own quotes, e.g. '\"hello\"' or '{\"k\": 1}'", code="bad_json",
                         status=400) from None


def _say(err: Console, code: str, message: str, hint: str | None = None) -> None:
    err.print(f"[red]error[/] {escape(f'[{code}]')} {escape(message)}", highlight=False)
    if hint:
        err.print(f"  hint: {escape(hint)}", highlight=False)


def run(command: Callable[..., Any], err: Console) -> NoReturn:
    """Run the click/typer ``command`` and exit, mapping every failure on the way out."""
    try:
        code = command(standalone_mode=False)
    except SkiffError as exc:
        hint = exc.details.get("hint")
        _say(err, exc.code, exc.message, hint if isinstance(hint, str) else None)
        tb = exc.details.get("traceback")
        if tb:
            err.print(str(tb), markup=False, highlight=False)
        sys.exit(getattr(exc, "exit_code", 1))
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group run bare: its help
            exc.show()  # type: ignore[attr-defined]
            sys.exit(2)
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx else "skiff"
        _say(err, "bad_usage", exc.format_message(), f"see `{where} --help`")  # type: ignore[attr-defined]
        sys.exit(2)
    except ClickException as exc:
        _say(err, "bad_usage", exc.format_message())  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", 1))
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except OSError as exc:
        _say(err, "os_error", f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""),
             "check the path and its permissions")
        sys.exit(1)
    except Exception as exc:  # a bug: say so briefly; the traceback on request
        if type(exc).__name__ == "Abort":  # click's ^C at a prompt
            err.print("interrupted")
            sys.exit(130)
        if os.environ.get("SKIFF_DEBUG"):
            raise
        _say(err, "internal_error", f"{type(exc).__name__}: {exc}",
             "this is a bug in Skiff; rerun with SKIFF_DEBUG=1 for the traceback and report it")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
