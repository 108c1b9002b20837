"""Import an app from its code directory and recognise what kind it is.

Detection, when ``spec.kind`` is not given:

    a function registered by functions_framework's decorators → http (served
      as WSGI by a Flask app) or cloudevent (takes events); see functions.py
    async callable taking (scope, receive, send)              → asgi
    Flask-like object (has ``wsgi_app``) or (environ, start_response) → wsgi
    any other callable taking two arguments (event, context)  → lambda
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback

from .asgi import AsgiApp
from .exceptions import LoadError
from .functions import signature_type
from .functions import wrap as wrap_function
from .lambda_app import LambdaApp
from .loaded import LoadedApp, StaticOnlyApp
from .wsgi import WsgiApp

KINDS: dict[str, type[LoadedApp]] = {"lambda": LambdaApp, "asgi": AsgiApp, "wsgi": WsgiApp}
_KIND_HINT = "set spec.kind to lambda, asgi or wsgi in skiff.yaml"


def load_app(code_dir: str, handler: str | None, kind: str | None, *,
             static_only: bool = False) -> LoadedApp:
    """Import ``handler`` ("module:attr", or Lambda's "module.attr") from
    ``code_dir`` and wrap it for its kind. With ``static_only`` nothing is
    imported: the app only has static files, which the gateway serves."""
    if static_only or kind == "static":
        return StaticOnlyApp()
    if kind is not None and kind not in KINDS:
        raise LoadError(f"unknown kind {kind!r}: {_KIND_HINT}")
    if not handler:
        raise LoadError("the app has no handler: set spec.handler to 'module:attribute' "
                        "(e.g. 'app:handler' for def handler(event, context) in app.py)")
    # "module:factory()": an app factory (Flask's create_app), called once at init
    factory = handler.endswith("()")
    module_name, attr = _split_handler(handler[:-2] if factory else handler)
    code_dir = os.path.abspath(code_dir)
    if not sys.path or sys.path[0] != code_dir:
        sys.path.insert(0, code_dir)
    _forget_foreign(module_name, code_dir)

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise LoadError(f"module {module_name!r} not found in {code_dir} "
                            f"(spec.handler is {handler!r})") from None
        if exc.name and not _within_code(exc.name, code_dir):
            # the app's environment holds its requirements only (not the platform's packages)
            top = exc.name.partition(".")[0]
            raise LoadError(f"importing {module_name!r} failed: no module named {top!r} is "
                            f"installed: add {distribution_for(top)} to requirements.txt",
                            _summary(exc, code_dir)) from exc
        raise LoadError(f"importing {module_name!r} failed: {_last_line(exc)}",
                        _summary(exc, code_dir)) from exc
    except (Exception, SystemExit) as exc:
        raise LoadError(f"importing {module_name!r} failed: {_last_line(exc)}",
                        _summary(exc, code_dir)) from exc

    target: object = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise LoadError(f"module {module_name!r} has no attribute {attr!r}"
                            f"{_candidates(module)} (spec.handler is {handler!r})") from None
        except Exception as exc:  # a property or lazy module attribute that raised
            raise LoadError(f"resolving {handler!r} failed: {_last_line(exc)}",
                            _summary(exc, code_dir)) from exc

    if factory:
        if not callable(target):
            raise LoadError(f"{attr!r} in {module_name!r} is not callable, so it cannot be an "
                            f"app factory (spec.handler is {handler!r})")
        try:
            target = target()
        except (Exception, SystemExit) as exc:
            raise LoadError(f"the app factory {handler!r} failed: {_last_line(exc)}",
                            _summary(exc, code_dir)) from exc
    signature = signature_type(target)
    if signature is not None and kind in (None, "lambda", "wsgi"):
        # a stored revision names the kind reported below (wsgi or lambda)
        return wrap_function(target, signature)
    if kind is None:
        kind = detect_kind(target)
        if kind is None:
            raise LoadError(f"cannot tell what kind of app {handler!r} is "
                            f"({_describe(target)}); {_KIND_HINT}")
    return KINDS[kind](target)


def detect_kind(obj: object) -> str | None:
    """'asgi', 'wsgi', 'lambda' or None when ``obj`` fits none of them."""
    if not callable(obj) or inspect.isclass(obj):
        return None
    params = _positional(obj)
    if _is_async(obj):
        return "asgi" if params is not None and _takes(params, 3) else None
    if hasattr(obj, "wsgi_app"):  # Flask and other Werkzeug-style apps
        return "wsgi"
    if params is None or not _takes(params, 2):
        return None
    first, second = (params[1] + ["", ""])[:2]
    if first in ("environ", "env", "environment") or second == "start_response":
        return "wsgi"
    return "lambda"


# Import names whose distribution is named otherwise (the rest: "_" becomes "-").
_DISTRIBUTIONS = {
    "yaml": "PyYAML", "PIL": "pillow", "bs4": "beautifulsoup4", "cv2": "opencv-python",
    "dateutil": "python-dateutil", "jwt": "PyJWT", "sklearn": "scikit-learn",
    "dotenv": "python-dotenv", "multipart": "python-multipart", "google": "the google-* package",
    "attr": "attrs", "magic": "python-magic", "docx": "python-docx", "serial": "pyserial",
    "psycopg2": "psycopg2-binary", "Crypto": "pycryptodome", "OpenSSL": "pyOpenSSL",
}


def distribution_for(module: str) -> str:
    """The requirements.txt line that most likely provides ``module``."""
    return _DISTRIBUTIONS.get(module, module.replace("_", "-"))


def _within_code(module: str, code_dir: str) -> bool:
    top = module.partition(".")[0]
    return os.path.exists(os.path.join(code_dir, top)) or os.path.exists(
        os.path.join(code_dir, top + ".py"))


def _is_async(obj: object) -> bool:
    # Functions directly; app objects (FastAPI, Starlette) through their __call__.
    # Only called on callables, whose type always has __call__.
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(type(obj).__call__)


def _positional(obj: object) -> tuple[int, list[str], bool] | None:
    """(required count, names, has *args) of the positional parameters."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    required, names, star = 0, [], False
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
            if p.default is p.empty:
                required += 1
        elif p.kind is p.VAR_POSITIONAL:
            star = True
    return required, names, star


def _takes(params: tuple[int, list[str], bool], n: int) -> bool:
    required, names, star = params
    return required <= n and (star or len(names) >= n)


def _split_handler(handler: str) -> tuple[str, str]:
    if ":" in handler:
        module_name, _, attr = handler.partition(":")
    else:  # Lambda's "file.function", the file maybe in a directory ("src/app.handler")
        module_name, _, attr = handler.rpartition(".")
        module_name = module_name.replace("/", ".")
    if not module_name or not attr:
        raise LoadError(f"spec.handler {handler!r} must look like 'module:attribute'")
    return module_name, attr


def _forget_foreign(module_name: str, code_dir: str) -> None:
    """Drop a cached module of the same name that came from elsewhere (another
    app loaded earlier in this process, e.g. by skiff.testing)."""
    top = module_name.partition(".")[0]
    cached = sys.modules.get(top)
    if cached is None:
        return
    origin = getattr(cached, "__file__", None) or ""
    if not _within(origin, code_dir):
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]


def _within(path: str, directory: str) -> bool:
    return bool(path) and os.path.abspath(path).startswith(directory + os.sep)


def _summary(exc: BaseException, code_dir: str) -> str:
    """The last frames within the app's code, then the exception line(s)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _within(f.filename, code_dir)]
    lines = []
    for f in frames[-5:]:
        lines.append(f'  File "{os.path.relpath(f.filename, code_dir)}", line {f.lineno}, in {f.name}\n')
        if f.line:
            lines.append(f"    {f.line.strip()}\n")
    lines.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(lines).rstrip("\n")


def _last_line(exc: BaseException) -> str:
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def _candidates(module: object) -> str:
    names = sorted(
        name for name, value in vars(module).items()
        if not name.startswith("_") and callable(value) and not inspect.isclass(value)
        and not inspect.ismodule(value)
        and (not inspect.isfunction(value) or value.__module__ == module.__name__)
    )
    return f"; it has {', '.join(names[:5])}" if names else ""


def _describe(obj: object) -> str:
    if inspect.isclass(obj):
        return f"a class; point spec.handler at an instance or function, not {obj.__name__}"
    if not callable(obj):
        return f"a {type(obj).__name__}, not callable"
    params = _positional(obj)
    what = "async callable" if _is_async(obj) else "callable"
    if params is None:
        return f"a {what} with an unknown signature"
    return f"a {what} taking ({', '.join(params[1])})"
