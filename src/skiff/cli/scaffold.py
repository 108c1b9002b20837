"""`skiff new`: an app from a template, ready for an editor and for git.

A template is a built-in one (``skiff/cli/templates/NAME``), a directory, or a git
URL; ``__APP_NAME__`` in file names and text becomes the app's name and
``__APP_MODULE__`` its Python identifier (test files are named for the app, so
several apps' tests run in one pytest session). Where it came from is recorded in
``metadata.labels.templateRef``. ``skiff.yaml`` gets the YAML language server's
modeline pointing at ``skiff.schema.json`` (written beside it, not deployed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from skiff.errors import SkiffError

TEMPLATES = Path(__file__).parent / "templates"
PLACEHOLDER, MODULE = "__APP_NAME__", "__APP_MODULE__"
MODELINE = "# yaml-language-server: $schema=./skiff.schema.json\n"
_GIT = re.compile(r"^(https?://|git@|ssh://|git://|file://)|\.git$")


def builtin() -> list[str]:
    return sorted(p.name for p in TEMPLATES.iterdir() if p.is_dir() and p.name != "__pycache__")


def copy_template(src: Path, dest: Path, name: str) -> None:
    """Copy ``src`` to ``dest`` with the placeholders filled in (binary files as they are)."""
    module = name.replace("-", "_")
    for path in sorted(src.rglob("*")):
        rel_parts = path.relative_to(src).parts
        if "__pycache__" in rel_parts or ".git" in rel_parts:
            continue
        rel = Path(str(path.relative_to(src)).replace(PLACEHOLDER, name).replace(MODULE, module))
        if path.is_dir():
            (dest / rel).mkdir(parents=True, exist_ok=True)
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            shutil.copy2(path, dest / rel)
            continue
        (dest / rel).write_text(text.replace(PLACEHOLDER, name).replace(MODULE, module))


def with_template_ref(text: str, ref: str) -> str:
    """skiff.yaml's text with ``metadata.labels.templateRef`` set, comments kept."""
    value = json.dumps(ref)
    if re.search(r"(?m)^  labels:\s*$", text):
        return re.sub(r"(?m)^(  labels:\s*)$", rf"\1\n    templateRef: {value}", text, count=1)
    if re.search(r"(?m)^  labels:", text):  # a flow mapping: leave it, say it here
        return text
    return re.sub(r"(?m)^(  name: .*)$", rf"\1\n  labels: {{templateRef: {value}}}", text, count=1)


def _resolve(template: str, work: Path) -> tuple[Path, str]:
    """(directory to copy, the templateRef to record)."""
    if (TEMPLATES / template).is_dir() and "/" not in template:
        return TEMPLATES / template, f"skiff:{template}"
    if _GIT.search(template):
        done = subprocess.run(["git", "clone", "--quiet", "--depth", "1", template,
                               str(work / "t")], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise SkiffError(f"cannot clone template {template}: {done.stderr.strip()[-300:]}",
                             code="bad_template", status=400)
        return work / "t", template
    path = Path(template).expanduser()
    if path.is_dir():
        if not (path / "skiff.yaml").exists():
            raise SkiffError(f"template directory {path} has no skiff.yaml", code="bad_template",
                             status=400)
        return path, str(path.resolve())
    raise SkiffError(f"no template {template!r}: give one of {', '.join(builtin())}, a "
                     "directory, or a git URL", code="bad_template", status=400)


def git_init(dest: Path, message: str) -> str | None:
    """A repository with one commit of everything, or why not (no git here)."""
    if shutil.which("git") is None:
        return "git is not installed: no repository made"
    ident = [] if _git_ident(dest) else ["-c", "user.name=Skiff", "-c", "user.email=skiff@localhost"]
    for args in (["init", "--quiet"], ["add", "-A"], [*ident, "commit", "--quiet", "-m", message]):
        done = subprocess.run(["git", *args], cwd=dest, capture_output=True, text=True,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
        if done.returncode != 0:
            return f"git {args[-1] if args[0] != 'commit' else 'commit'} failed: {done.stderr.strip()[-200:]}"
    return None


def _git_ident(cwd: Path) -> bool:
    done = subprocess.run(["git", "config", "user.email"], cwd=cwd, capture_output=True,
                          text=True)
    return bool(done.stdout.strip())


def create(name: str, template: str, parent: Path, *, git: bool = True) -> tuple[Path, list[str]]:
    """Make the app; (its directory, notes for the person)."""
    from skiff.manifest import json_schema

    if not re.fullmatch(r"[a-z](?:[a-z0-9-]{0,39}[a-z0-9])?", name):
        raise SkiffError("an app name is lowercase letters, digits and dashes, starting with a "
                         "letter (it becomes part of URLs)", code="bad_name", status=400)
    dest = parent / name
    if dest.exists():
        raise SkiffError(f"{dest} already exists; pick another name or --dir", code="exists",
                         status=409)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="skiff-template-") as work:
        src, ref = _resolve(template, Path(work))
        copy_template(src, dest, name)
    manifest = dest / "skiff.yaml"
    text = manifest.read_text()
    if "yaml-language-server:" not in text:
        text = MODELINE + text
    manifest.write_text(with_template_ref(text, ref))
    (dest / "skiff.schema.json").write_text(json.dumps(json_schema(), indent=2) + "\n")
    if git:
        problem = git_init(dest, f"New Skiff app {name} (template {ref})")
        if problem:
            notes.append(problem)
    return dest, notes
