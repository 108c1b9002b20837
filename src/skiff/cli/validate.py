"""`skiff validate DIR`: the checks of a deploy that need no server, with errors
that name the user's own files.

The manifest is loaded here; the handler is imported in a child process (an
isolated interpreter, ``python -I``, in the app directory, with the app's env, an
address-space and CPU-time limit and a timeout), so an app's import-time code can
neither touch this process nor hang it. That child is not the server's full
sandbox (no namespaces, uid or egress proxy): it is the author's own code on the
author's machine, checked before it is uploaded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from skiff.errors import DeployError, SkiffError

IMPORT_TIMEOUT = 60.0  # seconds, as the server's SKIFF_INIT_TIMEOUT default
_CHILD = """
import json, sys
from skiff.testing import AppClient
try:
    with AppClient(sys.argv[1]) as c:
        print(json.dumps({"ok": True, "kind": c.kind}))
except Exception as exc:
    print(json.dumps({"ok": False, "message": getattr(exc, "message", str(exc)),
                      "traceback": getattr(exc, "traceback_summary", ""),
                      "missing": getattr(getattr(exc, "__cause__", None), "name", None)}))
"""


@dataclass
class Report:
    name: str
    kind: str | None
    handler: str | None
    warnings: list[str] = field(default_factory=list)


def shown(directory: Path) -> str:
    """``directory`` as the user would type it: relative to here when it is below."""
    try:
        rel = directory.resolve().relative_to(Path.cwd())
        return str(rel) if str(rel) != "." else "."
    except ValueError:
        return str(directory)


def name_files(text: str, where: str) -> str:
    """Paths an error gives relative to the app (the server's, or the child's) named
    from here: ``skiff.yaml: ...`` → ``myapp/skiff.yaml: ...``."""
    if where in ("", "."):
        return text
    text = re.sub(r"(?m)^(skiff\.yaml)", rf"{where}/\1", text)
    return re.sub(r'File "(?![/<])([^"]+)"', rf'File "{where}/\1"', text)


def _limits() -> None:  # in the child, before exec
    import resource

    gib = 4 << 30
    resource.setrlimit(resource.RLIMIT_AS, (gib, gib))
    cpu = int(IMPORT_TIMEOUT)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))


def check(directory: Path) -> Report:
    """Raise a ManifestError or DeployError (``import_failed``) naming the user's files."""
    from skiff.manifest import load_manifest
    from skiff.manifest.state_machine import load_state_machine, resource_kind

    directory = Path(directory)
    where = shown(directory)
    if not (directory / "skiff.yaml").exists():
        raise SkiffError(f"{where} has no skiff.yaml; create an app with `skiff new NAME`",
                         code="no_manifest", status=400)
    if resource_kind(directory) == "StateMachine":  # no handler: its manifest and file
        machine, _ = load_state_machine(Path(where))  # (the server checks the ASL itself)
        return Report(machine.name, "state machine", None)
    manifest = load_manifest(Path(where) / "skiff.yaml")
    spec = manifest.spec
    report = Report(manifest.name, spec.kind, spec.handler)
    if spec.handler is None or spec.kind == "static":
        return report
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR")}
    try:
        done = subprocess.run([sys.executable, "-I", "-c", _CHILD, str(directory.resolve())],
                              capture_output=True, text=True, cwd=directory, env=env,
                              timeout=IMPORT_TIMEOUT, preexec_fn=_limits)  # noqa: PLW1509
    except subprocess.TimeoutExpired:
        raise DeployError(f"importing {spec.handler!r} from {where} took over "
                          f"{IMPORT_TIMEOUT:.0f} s; move slow work out of module level",
                          code="import_failed") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise DeployError(f"importing {spec.handler!r} from {where} ended the process "
                          f"(exit {done.returncode}): {done.stderr.strip()[-500:]}",
                          code="import_failed")
    result = json.loads(lines[-1])
    if result["ok"]:
        report.kind = result["kind"]
        return report
    missing = result.get("missing")
    reqs = directory / "requirements.txt"
    if missing and reqs.exists() and not (directory / missing).exists() \
            and not (directory / f"{missing}.py").exists():
        report.warnings.append(f"{missing!r} is not installed here, so the handler's import "
                               f"was not checked; the server installs {where}/requirements.txt "
                               "at deploy")
        return report
    message = result["message"].replace(str(directory.resolve()), where)
    raise DeployError(f"{where}: {message}; fix it and run `skiff validate {where}` again",
                      code="import_failed",
                      traceback=name_files(result.get("traceback") or "", where))


def say(report: Report, where: str) -> list[str]:
    from rich.markup import escape

    kind = report.kind or "static"
    lines = [f"[green]valid[/] {report.name} ({kind}): {where}/skiff.yaml"
             + (f", handler {report.handler} imports" if report.handler and not report.warnings
                else "")]
    lines += [f"[yellow]warning[/] {escape(w)}" for w in report.warnings]
    return lines


def validate(directory: Annotated[Path, typer.Argument(help="the app directory")] = Path(".")) -> None:
    """Check DIR's skiff.yaml and import its handler (no server needed)."""
    from rich.markup import escape

    from skiff.cli.app import out

    report = check(directory)
    for line in say(report, escape(shown(directory))):
        out.print(line, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
