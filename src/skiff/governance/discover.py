"""Discovery: micro apps in directories and git repositories that Skiff does not
know of, each with a guessed owner. (The egress log's hosts no app declares are
read by the platform, with the proxy's own rules: ``skiff.platform.inventory``.)

Threat model: the scanned trees are anyone's code. Nothing found is imported or
run (Python is read with :mod:`ast`, YAML with a safe loader that ignores
CloudFormation tags); files past :data:`MAX_FILE_BYTES` and trees past
:data:`MAX_FILES` are skipped (and counted), virtualenvs, ``node_modules`` and
VCS internals are never entered, and ``git`` runs with a timeout on the
repositories the caller named.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

MAX_FILE_BYTES = 512 * 1024
MAX_FILES = 50_000
SKIP_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", ".tox",
             ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", "site-packages", ".skiff"}
GIT_TIMEOUT = 20.0

#: constructors of web apps: the call's last name -> (kind, framework)
_WEB_APPS = {"FastAPI": ("asgi", "fastapi"), "Starlette": ("asgi", "starlette"),
             "Quart": ("asgi", "quart"), "Litestar": ("asgi", "litestar"),
             "Flask": ("wsgi", "flask"), "Bottle": ("wsgi", "bottle"),
             "get_wsgi_application": ("wsgi", "django"),
             "get_asgi_application": ("asgi", "django")}
_FF_DECORATORS = {"http", "cloud_event", "typed", "errorhandler"}
_WEB_SERVERS = re.compile(r"\b(uvicorn|gunicorn|hypercorn|daphne|granian|waitress-serve|"
                          r"flask\s+run|fastapi\s+run|manage\.py\s+runserver)\b")
_NAME = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Find:
    """One micro app (or part of one) found on disk."""

    kind: str  # lambda | asgi | wsgi | functions-framework | sam | serverless | docker | skiff
    name: str  # the app name it would get (lowercase, '-')
    path: str  # the file, absolute
    detail: str  # what gave it away, e.g. "def handler(event, context)"
    owner: str | None = None  # most frequent author e-mail in the file's git history
    repo: str | None = None  # the git work tree it is in

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Scan:
    finds: list[Find] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # too large, unreadable, past the cap
    files: int = 0

    def to_dict(self) -> dict:
        return {"finds": [f.to_dict() for f in self.finds], "skipped": self.skipped,
                "files": self.files}


def app_name(text: str) -> str:
    """A valid app name from a directory or resource name (``My_App`` -> ``my-app``)."""
    return _NAME.sub("-", text.lower()).strip("-")[:63].strip("-") or "app"


# -- per file -------------------------------------------------------------------------------
def python_finds(source: str) -> list[tuple[str, str]]:
    """(kind, detail) of what a Python module serves; empty when it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return []
    out: list[tuple[str, str]] = []
    for node in tree.body:  # handlers are module-level functions
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names = [a.arg for a in node.args.posonlyargs + node.args.args]
            if names[:2] == ["event", "context"] and len(names) == 2:
                out.append(("lambda", f"def {node.name}(event, context)"))
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if (isinstance(target, ast.Attribute) and target.attr in _FF_DECORATORS
                        and isinstance(target.value, ast.Name)
                        and target.value.id == "functions_framework"):
                    out.append(("functions-framework",
                                f"@functions_framework.{target.attr} def {node.name}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in _WEB_APPS:
                kind, framework = _WEB_APPS[called]
                out.append((kind, f"{framework}: {called}()"))
    return list(dict.fromkeys(out))


class _CfnLoader(yaml.SafeLoader):
    """Safe YAML that reads CloudFormation's short tags (!Ref, !GetAtt, ...) as null."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _yaml(text: str) -> object:
    try:
        return yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        return None


def template_finds(filename: str, text: str) -> list[tuple[str, str, str]]:
    """(kind, name, detail) of the functions a SAM or serverless.yml template declares."""
    doc = _yaml(text)
    if not isinstance(doc, dict):
        return []
    out = []
    if filename.startswith("serverless.") and isinstance(doc.get("functions"), dict):
        for fname, fn in doc["functions"].items():
            handler = fn.get("handler", "?") if isinstance(fn, dict) else "?"
            out.append(("serverless", str(fname), f"serverless.yml function, handler {handler}"))
    resources = doc.get("Resources")
    if isinstance(resources, dict):
        for rname, res in resources.items():
            if isinstance(res, dict) and res.get("Type") == "AWS::Serverless::Function":
                props = res.get("Properties") if isinstance(res.get("Properties"), dict) else {}
                out.append(("sam", str(rname), "AWS::Serverless::Function, handler "
                            f"{props.get('Handler', '?')}"))
    return out


def dockerfile_finds(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        # what the container runs, not what a RUN step installs
        if len(words) == 2 and words[0].upper() in ("CMD", "ENTRYPOINT"):
            found = _WEB_SERVERS.search(words[1])
            if found:
                out.append(("docker", f"{words[0].upper()} runs {found.group(1)}"))
    return out[:1]


def skiff_name(text: str) -> str | None:
    doc = _yaml(text)
    if isinstance(doc, dict) and isinstance(doc.get("metadata"), dict):
        name = doc["metadata"].get("name")
        return name if isinstance(name, str) else None
    return None


# -- owners from git -------------------------------------------------------------------------
class _Git:
    """``git log --format=%ae`` per file, with the work tree of each directory cached."""

    def __init__(self) -> None:
        self._roots: dict[Path, Path | None] = {}

    def root(self, directory: Path) -> Path | None:
        if directory not in self._roots:
            out = self._run(directory, "rev-parse", "--show-toplevel")
            self._roots[directory] = Path(out.strip()) if out else None
        return self._roots[directory]

    def owner(self, path: Path) -> tuple[str | None, str | None]:
        root = self.root(path.parent)
        if root is None:
            return None, None
        out = self._run(root, "log", "--format=%ae", "--", str(path.relative_to(root)))
        authors = Counter(line for line in (out or "").splitlines() if line)
        # most commits wins; a tie goes to the earliest author (the one who started it)
        if not authors:
            return None, str(root)
        order = list(reversed((out or "").splitlines()))
        best = max(authors.values())
        return next(a for a in order if authors[a] == best), str(root)

    @staticmethod
    def _run(cwd: Path, *args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True,
                                  text=True, timeout=GIT_TIMEOUT,
                                  env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None


# -- the walk ---------------------------------------------------------------------------------
def scan(paths: list[Path], *, registered: frozenset[str] | set[str] = frozenset(),
         max_files: int = MAX_FILES, max_bytes: int = MAX_FILE_BYTES) -> Scan:
    """Every micro app under ``paths`` that is not one of ``registered`` (app names).
    A directory whose skiff.yaml names a registered app is that app: nothing under it
    is reported."""
    result = Scan()
    git = _Git()
    seen: set[tuple[str, str, str]] = set()
    for top in paths:
        top = top.resolve()
        walk = [(str(top.parent), [], [top.name])] if top.is_file() else os.walk(top)
        for dirpath, dirnames, filenames in walk:
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            here = Path(dirpath)
            texts = {}
            for fname in sorted(filenames):
                if not _interesting(fname):
                    continue
                if result.files >= max_files:
                    result.skipped.append(f"{here / fname}: past {max_files} files")
                    dirnames[:] = []
                    break
                result.files += 1
                text = _read(here / fname, max_bytes, result)
                if text is not None:
                    texts[fname] = text
            name = skiff_name(texts["skiff.yaml"]) if "skiff.yaml" in texts else None
            if name is not None and name in registered:
                dirnames[:] = []  # a registered app's tree
                continue
            for fname, text in texts.items():
                for kind, fname_app, detail in _finds(fname, text, name or app_name(here.name)):
                    key = (str(here / fname), kind, fname_app)
                    if key in seen:
                        continue
                    seen.add(key)
                    owner, repo = git.owner(here / fname)
                    result.finds.append(Find(kind, fname_app, str(here / fname), detail,
                                             owner, repo))
    return result


def _interesting(fname: str) -> bool:
    return (fname.endswith(".py") or fname in ("skiff.yaml", "serverless.yml", "serverless.yaml")
            or fname.startswith("Dockerfile") or fname.endswith((".yaml", ".yml")))


def _read(path: Path, max_bytes: int, result: Scan) -> str | None:
    try:
        if path.is_symlink() or not path.is_file():
            return None
        if path.stat().st_size > max_bytes:
            result.skipped.append(f"{path}: larger than {max_bytes} bytes")
            return None
        return path.read_text(errors="replace")
    except OSError as exc:
        result.skipped.append(f"{path}: {exc.strerror or exc}")
        return None


def _finds(fname: str, text: str, dir_app: str) -> list[tuple[str, str, str]]:
    if fname == "skiff.yaml":
        return [("skiff", dir_app, "skiff.yaml not deployed")]
    if fname.endswith(".py"):
        return [(k, dir_app, d) for k, d in python_finds(text)]
    if fname.startswith("Dockerfile"):
        return [(k, dir_app, d) for k, d in dockerfile_finds(text)]
    if "AWS::Serverless::Function" in text or fname.startswith("serverless."):
        return [(k, app_name(n), d) for k, n, d in template_finds(fname, text)]
    return []
