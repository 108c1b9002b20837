"""load_app: importing an app, recognising its kind, and explaining failures."""

import textwrap

import pytest

from skiff.errors import DeployError
from skiff.runtime import KINDS, LoadError, NotSupported, detect_kind, load_app
from skiff.runtime.loader import distribution_for

from .conftest import APPS, make_context, make_request

pytestmark = pytest.mark.usefixtures("isolated_imports")


def write_app(tmp_path, source, name="app"):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    return str(tmp_path)


@pytest.mark.parametrize(("source", "kind"), [
    ("def handler(event, context): return 1", "lambda"),
    ("def handler(e, c): return 1", "lambda"),
    ("def handler(event, context, extra=None): return 1", "lambda"),
    ("def handler(environ, start_response): return []", "wsgi"),
    ("async def handler(scope, receive, send): pass", "asgi"),
    ("""
     class App:
         async def __call__(self, scope, receive, send): pass
     handler = App()
     """, "asgi"),
    ("""
     class App:
         def __call__(self, environ, start_response): return []
     handler = App()
     """, "wsgi"),
    ("""
     import functools
     def deco(f):
         @functools.wraps(f)
         def wrapper(*args, **kwargs): return f(*args, **kwargs)
         return wrapper
     @deco
     def handler(event, context): return 1
     """, "lambda"),
    ("from fastapi import FastAPI\nhandler = FastAPI()", "asgi"),
    ("from starlette.applications import Starlette\nhandler = Starlette()", "asgi"),
    ("from flask import Flask\nhandler = Flask(__name__)", "wsgi"),
    ("""
     from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
     app = APIGatewayHttpResolver()
     handler = app.resolve
     """, "lambda"),
])
def test_kind_is_detected(tmp_path, source, kind):
    app = load_app(write_app(tmp_path, source), "app:handler", None)
    assert app.kind == kind
    assert type(app) is KINDS[kind]
    assert app.is_async is (kind == "asgi")
    assert app.default_concurrency == (64 if kind == "asgi" else 1)


@pytest.mark.parametrize("source", [
    "def handler(event): return 1",
    "async def handler(event, context): return 1",
    "def handler(scope, receive, send): pass",
    "handler = 42",
    "class handler:\n    def __init__(self, event, context): pass",
])
def test_undetectable_kind_says_how_to_set_it(tmp_path, source):
    with pytest.raises(LoadError, match="set spec.kind to lambda, asgi or wsgi"):
        load_app(write_app(tmp_path, source), "app:handler", None)


def test_explicit_kind_skips_detection(tmp_path):
    app = load_app(write_app(tmp_path, "def handler(*args): return 1"), "app:handler", "lambda")
    assert app.kind == "lambda"


def test_detect_kind_on_non_callables():
    assert detect_kind(None) is None
    assert detect_kind(int) is None


def test_lambda_style_dotted_handler(tmp_path):
    app = load_app(write_app(tmp_path, "def handler(event, context): return 1"), "app.handler", None)
    assert app.kind == "lambda"


def test_nested_attribute(tmp_path):
    source = """
    class Api:
        def resolve(self, event, context): return {"ok": True}
    api = Api()
    """
    app = load_app(write_app(tmp_path, source), "app:api.resolve", None)
    assert app.handle_event({}, make_context()) == {"ok": True}


def test_code_dir_comes_first_on_sys_path(tmp_path):
    import sys

    load_app(write_app(tmp_path, "def handler(event, context): return 1"), "app:handler", None)
    assert sys.path[0] == str(tmp_path)


def test_a_same_named_module_from_elsewhere_is_not_reused(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    first = load_app(write_app(one, "def handler(event, context): return 1"), "app:handler", None)
    second = load_app(write_app(two, "def handler(event, context): return 2"), "app:handler", None)
    assert first.handle_event({}, make_context()) == 1
    assert second.handle_event({}, make_context()) == 2


def test_missing_module(tmp_path):
    with pytest.raises(LoadError, match=r"module 'nope' not found in .* \(spec.handler is 'nope:handler'\)"):
        load_app(str(tmp_path), "nope:handler", None)


def test_missing_attribute_lists_candidates(tmp_path):
    source = "def main(event, context): return 1\ndef helper(): pass\n_private = 1"
    with pytest.raises(LoadError) as info:
        load_app(write_app(tmp_path, source), "app:handler", None)
    assert str(info.value) == ("module 'app' has no attribute 'handler'; it has helper, main "
                               "(spec.handler is 'app:handler')")


def test_import_error_has_a_short_traceback_in_the_app(monkeypatch):
    """The summary shows the app's own frames, not importlib's, then the error."""
    monkeypatch.delenv("BROKEN_APP_DATABASE_URL", raising=False)
    with pytest.raises(LoadError) as info:
        load_app(str(APPS / "broken_import"), "app:handler", None)
    err = info.value
    assert isinstance(err, DeployError) and err.status == 422
    assert str(err) == "importing 'app' failed: KeyError: 'BROKEN_APP_DATABASE_URL'"
    assert err.traceback_summary == (
        '  File "app.py", line 1, in <module>\n'
        "    from lib.settings import SETTINGS\n"
        '  File "lib/settings.py", line 3, in <module>\n'
        '    SETTINGS = {"db": os.environ["BROKEN_APP_DATABASE_URL"]}\n'
        "KeyError: 'BROKEN_APP_DATABASE_URL'"
    )
    assert "importlib" not in err.traceback_summary


def test_missing_dependency_is_an_import_failure(tmp_path):
    """A module the environment lacks is named with the requirements.txt line to add."""
    with pytest.raises(LoadError, match="importing 'app' failed: no module named "
                                        "'not_installed_pkg' is installed: add "
                                        "not-installed-pkg to requirements.txt"):
        load_app(write_app(tmp_path, "import not_installed_pkg.sub"), "app:handler", None)


@pytest.mark.parametrize(("module", "line"), [
    ("yaml", "PyYAML"), ("PIL", "pillow"), ("aws_lambda_powertools", "aws-lambda-powertools"),
    ("functions_framework", "functions-framework"), ("flask", "flask"),
])
def test_the_requirement_named_for_a_missing_module(module, line):
    assert distribution_for(module) == line


def test_missing_module_of_the_apps_own_package_is_not_a_requirement(tmp_path):
    """A module missing inside the app's own package is the app's bug, not a dependency."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("import pkg.nothere\n")
    write_app(tmp_path, "import pkg\ndef handler(event, context): return 1")
    with pytest.raises(LoadError) as info:
        load_app(str(tmp_path), "app:handler", None)
    assert "requirements.txt" not in str(info.value)


# A stand-in for functions_framework as an app would vendor it: its decorators fill
# _function_registry.REGISTRY_MAP, which is all the loader reads.
_FF_INIT = """
from . import _function_registry

def _register(kind):
    def decorate(func):
        _function_registry.REGISTRY_MAP[func.__name__] = kind
        return func
    return decorate

http = _register("http")
cloud_event = _register("cloudevent")
typed = _register("typed")
"""


def _with_framework(tmp_path, source):
    ff = tmp_path / "functions_framework"
    ff.mkdir()
    (ff / "__init__.py").write_text(_FF_INIT)
    (ff / "_function_registry.py").write_text("REGISTRY_MAP = {}\n")
    return write_app(tmp_path, source, name="main")


def test_functions_framework_http_function_is_served_by_flask(tmp_path):
    """@functions_framework.http: a Flask request in, any Flask return value out, at
    any path below the mount; it runs as a WSGI app."""
    code = _with_framework(tmp_path, """
        import functions_framework

        @functions_framework.http
        def hello(request):
            return f"hi {request.args['name']} at {request.path}", 201, {"x-ff": "1"}
    """)
    app = load_app(code, "main:hello", None)
    assert app.kind == "wsgi"
    resp = app.handle_http(make_request(path="/deep/path", query="name=ada", mount="/f"),
                           make_context())
    assert (resp.status, resp.body) == (201, b"hi ada at /deep/path")
    assert ("x-ff", "1") in resp.headers
    # a restored revision names the kind it reported; the function is still wrapped
    assert load_app(code, "main:hello", "wsgi").handle_http(
        make_request(query="name=bo"), make_context()).body == b"hi bo at /"


def test_a_plain_two_argument_function_is_not_taken_for_functions_framework(tmp_path):
    """Only what the framework's registry names is a function; the rest is detected as before."""
    code = _with_framework(tmp_path, """
        import functions_framework

        @functions_framework.http
        def other(request):
            return "x"

        def handler(event, context):
            return {"ok": True}
    """)
    assert load_app(code, "main:handler", None).kind == "lambda"


def test_unsupported_functions_framework_signature_is_refused(tmp_path):
    code = _with_framework(tmp_path, """
        import functions_framework

        @functions_framework.typed
        def typed_fn(data):
            return data
    """)
    with pytest.raises(LoadError, match="'typed' functions are not supported yet"):
        load_app(code, "main:typed_fn", None)


def test_syntax_error(tmp_path):
    with pytest.raises(LoadError, match="importing 'app' failed: SyntaxError") as info:
        load_app(write_app(tmp_path, "def handler(event, context)\n    return 1\n"),
                 "app:handler", None)
    assert "app.py" in info.value.traceback_summary


def test_sys_exit_at_import_is_a_load_error(tmp_path):
    with pytest.raises(LoadError, match="SystemExit"):
        load_app(write_app(tmp_path, "import sys\nsys.exit(3)"), "app:handler", None)


@pytest.mark.parametrize(("handler", "kind", "message"), [
    (None, None, "the app has no handler"),
    ("app", None, "must look like 'module:attribute'"),
    ("app:handler", "cgi", "unknown kind 'cgi'"),
])
def test_bad_arguments(tmp_path, handler, kind, message):
    with pytest.raises(LoadError, match=message):
        load_app(str(tmp_path), handler, kind)


def test_static_only_imports_nothing(tmp_path):
    app = load_app(str(tmp_path), None, None, static_only=True)
    assert app.kind == "static"
    assert app.handle_http(make_request(), make_context()).status == 404
    with pytest.raises(NotSupported):
        app.handle_event({}, make_context())


def test_events_need_a_lambda_handler():
    from flask import Flask

    from skiff.runtime.wsgi import WsgiApp

    with pytest.raises(NotSupported, match="direct invocation needs a Lambda handler"):
        WsgiApp(Flask(__name__)).handle_event({}, make_context())
