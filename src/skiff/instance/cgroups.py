"""Per-instance memory cgroups (v2 where it has the memory controller, v1
otherwise). When neither is writable, instances fall back to an address-space
rlimit and ``available`` says why."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")


class Cgroup:
    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version

    def attach(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def set_memory(self, megabytes: int) -> None:
        limit = str(megabytes * 1024 * 1024)
        if self.version == 2:
            (self.path / "memory.max").write_text(limit)
            with contextlib.suppress(OSError):
                (self.path / "memory.swap.max").write_text("0")
        else:
            (self.path / "memory.limit_in_bytes").write_text(limit)
            with contextlib.suppress(OSError):  # absent without swap accounting
                (self.path / "memory.memsw.limit_in_bytes").write_text(limit)

    def oom_killed(self) -> bool:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        except OSError:
            pass
        return False

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()


class CgroupManager:
    """Owns one directory of cgroups for this platform process."""

    def __init__(self, name: str) -> None:
        self.version: int | None = None
        self.reason = ""
        self.base: Path | None = None
        for version, mount, own in _candidates():
            base = mount / own.lstrip("/") / name
            try:
                base.mkdir(parents=True, exist_ok=True)
                probe = base / "probe"
                probe.mkdir(exist_ok=True)
                probe.rmdir()
            except OSError as exc:
                self.reason = f"cannot create cgroups under {mount}: {exc.strerror}"
                continue
            if version == 2:
                with contextlib.suppress(OSError):
                    (base / "cgroup.subtree_control").write_text("+memory")
            self.version, self.base = version, base
            self.reason = ""
            return
        if not self.reason:
            self.reason = "no memory cgroup controller is mounted"

    @property
    def available(self) -> bool:
        return self.base is not None

    def create(self, name: str) -> Cgroup | None:
        if self.base is None or self.version is None:
            return None
        path = self.base / name
        try:
            path.mkdir(exist_ok=True)
        except OSError:
            return None
        return Cgroup(path, self.version)

    def close(self) -> None:
        if self.base is None:
            return
        for child in self.base.iterdir():
            if child.is_dir():
                with contextlib.suppress(OSError):
                    child.rmdir()
        with contextlib.suppress(OSError):
            self.base.rmdir()


def _candidates() -> list[tuple[int, Path, str]]:
    own: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                own[c] = path
    out: list[tuple[int, Path, str]] = []
    controllers = _ROOT / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split():
        out.append((2, _ROOT, own.get("", "/")))
    if (_ROOT / "memory" / "memory.limit_in_bytes").exists() and os.access(_ROOT / "memory", os.W_OK):
        out.append((1, _ROOT / "memory", own.get("memory", "/")))
    return out
