"""Install the peers Skiff is measured against, each into its own virtual
environment under ``bench/.peers/`` (made with the same interpreter as Skiff's,
via uv), and ``wrk`` from apt when it is missing.

An environment is rebuilt only when its requirement list changes; versions are
whatever the index had then, and are recorded with every result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from bench.common import PEERS, PYTHON, log

# name -> (requirements, distributions whose versions the report shows)
ENVS: dict[str, tuple[list[str], list[str]]] = {
    "uvicorn": (["uvicorn[standard]", "fastapi"],
                ["uvicorn", "uvloop", "httptools", "fastapi", "starlette", "pydantic"]),
    "powertools": (["aws-lambda-powertools", "uvicorn[standard]"],
                   ["aws-lambda-powertools", "uvicorn", "uvloop", "httptools"]),
    "functions-framework": (["functions-framework"],
                            ["functions-framework", "flask", "gunicorn", "werkzeug", "starlette",
                             "uvicorn"]),
    # python-lambda-local imports pkg_resources, which setuptools dropped in 81
    "lambda-local": (["python-lambda-local", "setuptools<81"], ["python-lambda-local", "setuptools"]),
    # the workflow engines of bench/workflows.py
    "workflows": (["dbos", "prefect"], ["dbos", "prefect", "sqlalchemy"]),
}
SKIFF_DISTS = ["skiff", "uvicorn", "uvloop", "httptools", "msgspec", "fastapi", "starlette",
               "pydantic"]


def python(name: str) -> str:
    return str(PEERS / name / "bin" / "python")


def script(name: str, command: str) -> str:
    return str(PEERS / name / "bin" / command)


def _uv() -> str:
    uv = Path(PYTHON).parent / "uv"
    if uv.exists():
        return str(uv)
    found = shutil.which("uv")
    if not found:
        raise SystemExit("bench: uv is needed to install the peers (pip install uv)")
    return found


def _install_env(name: str, reqs: list[str]) -> None:
    env_dir = PEERS / name
    stamp = env_dir / ".bench-spec"
    spec = json.dumps(reqs)
    if stamp.exists() and stamp.read_text() == spec and Path(python(name)).exists():
        return
    log(f"installing peer {name}: {' '.join(reqs)}")
    uv = _uv()
    subprocess.run([uv, "venv", "--quiet", "--allow-existing", "--python", PYTHON, str(env_dir)],
                   check=True)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", python(name), *reqs], check=True)
    stamp.write_text(spec)


def _ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        raise SystemExit("bench: wrk is missing; install it (apt-get install wrk) and re-run")
    log("installing wrk (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)


def ensure(need: set[str]) -> None:
    """Install what the selected stages need ("wrk" or an ENVS name)."""
    PEERS.mkdir(parents=True, exist_ok=True)
    if "wrk" in need:
        _ensure_wrk()
    for name, (reqs, _) in ENVS.items():
        if name in need:
            _install_env(name, reqs)


def _versions(py: str, dists: list[str]) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for d in sys.argv[1:]:\n"
            "    try: out[d] = m.version(d)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    proc = subprocess.run([py, "-c", code, *dists], capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def versions() -> dict[str, dict[str, str]]:
    out = {"skiff venv": _versions(PYTHON, SKIFF_DISTS)}
    for name, (_, dists) in ENVS.items():
        if Path(python(name)).exists():
            out[name] = _versions(python(name), dists)
    wrk = shutil.which("wrk")
    if wrk:
        proc = subprocess.run([wrk, "-v"], capture_output=True, text=True)
        first = (proc.stdout or proc.stderr).strip().splitlines()
        out["wrk"] = {"wrk": first[0].split()[1] if first and len(first[0].split()) > 1 else "?"}
    return out
