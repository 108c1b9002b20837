"""The `skiff` CLI run as a subprocess, as a person runs it: a fresh config directory,
no SKIFF_* settings inherited from the test run, output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_skiff(*args: str, cwd: Path | None = None, env: dict | None = None,
              config: Path | None = None, columns: int = 200, input: str | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m skiff ARGS``; ``config`` is its XDG_CONFIG_HOME (contexts live there)."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("SKIFF_URL", "SKIFF_ADMIN_TOKEN", "SKIFF_HOME")}
    base["COLUMNS"] = str(columns)
    if config is not None:
        base["XDG_CONFIG_HOME"] = str(config)
    return subprocess.run([sys.executable, "-m", "skiff", *args], capture_output=True,
                          text=True, cwd=cwd, env={**base, **(env or {})}, timeout=timeout,
                          input=input)


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"{done.args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def failed(done: subprocess.CompletedProcess, code: str) -> str:
    """The error a person reads: non-zero exit, ``[code]``, and never a traceback."""
    text = done.stdout + done.stderr
    assert done.returncode != 0, text
    assert "Traceback" not in text, text
    assert f"[{code}]" in done.stderr, text
    return " ".join(done.stderr.split())  # rich wraps long lines


def run_inprocess(monkeypatch, *args: str, env: dict | None = None,
                  columns: int = 200) -> tuple[int, str, str]:
    """The same CLI in this process (exit code, stdout, stderr): for the cases that need
    no fresh interpreter, at a fraction of a subprocess's start-up."""
    import io

    from rich.console import Console

    import skiff.cli.app  # noqa: F401 - loads the module
    from skiff.cli.failures import run

    cli = sys.modules["skiff.cli.app"]  # skiff.cli.app the attribute is the typer app

    for k in ("SKIFF_URL", "SKIFF_ADMIN_TOKEN", "SKIFF_HOME"):
        monkeypatch.delenv(k, raising=False)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=out, width=columns))
    monkeypatch.setattr(sys, "argv", ["skiff", *args])
    try:
        run(cli.app, Console(file=err, width=columns))
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()
