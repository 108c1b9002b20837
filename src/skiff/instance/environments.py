"""Dependency environments: an app's requirements.txt is resolved to a locked
set, and every app with the same locked set shares one virtual environment
(and one zygote). Installs go through uv, with its cache, so a rebuild is fast
and works offline once the packages have been seen.

The environment reaches Skiff's runtime, and nothing else of the platform:
``skiff-runtime/`` in the environment holds links to the ``skiff`` and ``msgspec``
packages only, and a .pth file *appends* it to sys.path (the app's own pinned
msgspec wins). Flask, FastAPI, pydantic, ... are the app's only if its
requirements.txt names them, as on Lambda or Cloud Run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from skiff.errors import DeployError
from skiff.instance.supervisor import ZygoteSpec
from skiff.instance.zygote import ISOLATED_MARKER, RUNTIME_PACKAGES

DEFAULT = ZygoteSpec(key="default", python=sys.executable)
# Part of every environment's key: an environment built before isolation is rebuilt,
# and one built by another install of Skiff (its runtime links point there) is not used.
_LAYOUT = f"isolated-1 {Path(__file__).resolve().parent.parent}"


def _uv() -> list[str]:
    try:
        from uv import find_uv_bin

        return [find_uv_bin()]
    except (ImportError, FileNotFoundError):
        return []


def _requirements(app_dir: Path) -> list[str]:
    path = app_dir / "requirements.txt"
    if not path.is_file():
        return []
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return sorted(set(lines))


class Environments:
    def __init__(self, root: Path, *, offline: bool = False) -> None:
        self.root = root
        self.offline = offline
        self.root.mkdir(parents=True, exist_ok=True)

    def lock(self, app_dir: Path) -> str:
        """The app's locked requirement set ("" without requirements). Blocking; cached,
        so the ``resolve`` that follows reuses it."""
        reqs = _requirements(app_dir)
        return self._lock(reqs) if reqs else ""

    def resolve(self, app_dir: Path, progress: Callable[[str], None] | None = None) -> ZygoteSpec:
        """The environment for an app directory, built if needed. Blocking. ``progress``
        hears each stage as a person would read it (called from this thread)."""
        say = progress or (lambda _stage: None)
        reqs = _requirements(app_dir)
        if not reqs:
            say("resolve: no requirements.txt, the shared environment")
            return DEFAULT
        say(f"resolve {len(reqs)} requirement(s)")
        lock = self._lock(reqs)
        key = hashlib.sha256(f"{sys.version}\n{_LAYOUT}\n{lock}".encode()).hexdigest()[:16]
        env_dir = self.root / key
        pinned = sum(1 for ln in lock.splitlines() if ln.strip() and not ln.startswith("#"))
        if (env_dir / ".ready").exists():
            say(f"install {pinned} package(s): already installed")
        else:
            with open(self.root / f"{key}.lock", "w") as guard:
                fcntl.flock(guard, fcntl.LOCK_EX)
                if not (env_dir / ".ready").exists():
                    say(f"install {pinned} package(s)")
                    self._build(env_dir, lock)
        preload = json.loads((env_dir / ".ready").read_text() or "[]")
        return ZygoteSpec(key=key, python=str(env_dir / "bin" / "python"), preload=tuple(preload))

    def _run(self, args: list[str], what: str, stdin: str | None = None) -> str:
        env = dict(os.environ)
        if self.offline:
            env["UV_OFFLINE"] = "1"
        proc = subprocess.run(args, input=stdin, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise DeployError(f"{what} failed:\n{tail}", code="dependency_install_failed")
        return proc.stdout

    def _lock(self, reqs: list[str]) -> str:
        """Pin the requirement set (cached, so restarts need no index)."""
        text = "\n".join(reqs) + "\n"
        raw_key = hashlib.sha256(f"{sys.version}\n{text}".encode()).hexdigest()[:16]
        cached = self.root / "locks" / f"{raw_key}.txt"
        if cached.exists():
            return cached.read_text()
        uv = _uv()
        if uv:
            lock = self._run([*uv, "pip", "compile", "-", "--python", sys.executable, "--quiet",
                              "--no-header", "--no-annotate"], "resolving requirements.txt",
                             stdin=text)
        else:  # no uv: the requirement lines themselves are the set
            lock = text
        lock = "\n".join(sorted(ln for ln in lock.splitlines() if ln.strip())) + "\n"
        cached.parent.mkdir(exist_ok=True)
        cached.write_text(lock)
        return lock

    def _build(self, env_dir: Path, lock: str) -> None:
        uv = _uv()
        py = env_dir / "bin" / "python"
        if uv:
            self._run([*uv, "venv", "--quiet", "--allow-existing", "--python", sys.executable,
                       str(env_dir)], "creating the environment")
            self._run([*uv, "pip", "install", "--quiet", "--python", str(py), "-r", "-"],
                      "installing requirements.txt", stdin=lock)
        else:
            self._run([sys.executable, "-m", "venv", str(env_dir)], "creating the environment")
            (env_dir / "requirements.lock").write_text(lock)
            self._run([str(py), "-m", "pip", "install", "-q", "-r",
                       str(env_dir / "requirements.lock")], "installing requirements.txt")
        (env_dir / "requirements.lock").write_text(lock)
        site = self._run([str(py), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         "inspecting the environment").strip()
        runtime = _link_runtime(env_dir / "skiff-runtime")
        Path(site, ISOLATED_MARKER).write_text(f"{runtime}\n")
        preload = self._run([str(py), "-I", "-c", _PRELOAD_PROBE], "inspecting the environment")
        (env_dir / ".ready").write_text(preload.strip() or "[]")


def _link_runtime(where: Path) -> Path:
    """A directory with links to the runtime's packages (skiff, msgspec) alone."""
    import importlib

    where.mkdir(exist_ok=True)
    for name in RUNTIME_PACKAGES:
        module = importlib.import_module(name)  # a package: its directory (a namespace
        target = Path(next(iter(module.__path__))).resolve()  # package: its first portion)
        link = where / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return where


# Top-level modules of the installed distributions: the zygote imports them so
# instances fork with the app's dependencies already loaded.
_PRELOAD_PROBE = """
import importlib.metadata as m, json, sysconfig
site = sysconfig.get_paths()['purelib']
names = set()
for dist in m.distributions():
    if not str(getattr(dist, '_path', '')).startswith(site):
        continue
    top = dist.read_text('top_level.txt')
    if top:
        names.update(n.strip() for n in top.split() if n.strip())
    else:
        for f in dist.files or ():
            parts = f.parts
            if len(parts) > 1 and parts[1] == '__init__.py':
                names.add(parts[0])
print(json.dumps(sorted(n for n in names if n.isidentifier() and not n.startswith('_'))))
"""
