"""Per-instance cgroups: memory, pids and CPU limits enforced by the kernel.

cgroup v2 is used where its unified hierarchy offers the memory controller;
otherwise v1 (one hierarchy per controller). Cgroups are made ahead of demand,
with the spare instances, because creating them per request costs 15-25 ms
at p99 here. An instance attaches *itself* (it writes its pid into the
procs files before running anything else), so its children are born inside.
When nothing is writable, instances fall back to rlimits and ``reason`` says why.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")
_V1 = ("memory", "pids", "cpu")
_CFS_PERIOD = 100_000


class Cgroup:
    def __init__(self, paths: dict[str, Path], version: int) -> None:
        self.paths = paths  # controller -> directory ("unified" for v2)
        self.version = version
        self._limits: tuple[int, float, int] | None = None

    @property
    def procs(self) -> list[str]:
        return sorted({str(p / "cgroup.procs") for p in self.paths.values()})

    def _write(self, controller: str, name: str, value: str) -> None:
        path = self.paths.get("unified" if self.version == 2 else controller)
        if path is not None:
            with contextlib.suppress(OSError):
                (path / name).write_text(value)

    def limit(self, memory_mb: int, cpu: float, max_pids: int) -> None:
        """Set the limits; a no-op when they are already these (spares get the
        defaults when they are made, so most cold starts write nothing here)."""
        if self._limits == (memory_mb, cpu, max_pids):
            return
        before, self._limits = self._limits, (memory_mb, cpu, max_pids)
        # These writes run on the gateway's event loop at every spare and bind, and a
        # cgroupfs write costs ~0.1 ms, up to ~10 ms at p99 while instances come and go
        # (measured with a memory hog OOM-killed a few times a second): write the CPU
        # quota only when it changes, and never the period (a new cgroup has the
        # kernel's default, 100 ms, which the quota is written against).
        cpu_changed = before is None or before[1] != cpu
        mem = str(memory_mb * 1024 * 1024)
        if self.version == 2:
            self._write("memory", "memory.max", mem)
            self._write("memory", "memory.swap.max", "0")
            self._write("pids", "pids.max", str(max_pids))
            if cpu_changed:
                self._write("cpu", "cpu.max", f"{int(cpu * _CFS_PERIOD)} {_CFS_PERIOD}")
        else:
            self._write("memory", "memory.limit_in_bytes", mem)
            self._write("memory", "memory.memsw.limit_in_bytes", mem)  # absent without swap accounting
            self._write("pids", "pids.max", str(max_pids))
            if cpu_changed:
                self._write("cpu", "cpu.cfs_quota_us", str(int(cpu * _CFS_PERIOD)))

    def delegate(self, uid: int, gid: int) -> None:
        """Let an unprivileged instance attach itself (cgroup delegation)."""
        for p in self.paths.values():
            for name in ("cgroup.procs", "tasks"):
                with contextlib.suppress(OSError):
                    os.chown(p / name, uid, gid)

    def attach(self, pid: int) -> None:
        for procs in self.procs:
            Path(procs).write_text(str(pid))

    def kill_all(self) -> int:
        """SIGKILL every process in the cgroup: the whole instance, however many
        processes it made, whatever namespace they are in."""
        killed = 0
        for procs in self.procs:
            try:
                pids = [int(x) for x in Path(procs).read_text().split()]
            except OSError:
                continue
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
        return killed

    def oom_killed(self) -> bool:
        if self.version == 2:
            path, name = self.paths.get("unified"), "memory.events"
        else:
            path, name = self.paths.get("memory"), "memory.oom_control"
        if path is None:
            return False
        try:
            for line in (path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        except OSError:
            pass
        return False

    def remove(self) -> None:
        for p in self.paths.values():
            with contextlib.suppress(OSError):
                p.rmdir()


class CgroupManager:
    """Owns one directory of cgroups (per controller) for this platform process."""

    def __init__(self, name: str) -> None:
        self.version: int | None = None
        self.reason = ""
        self.bases: dict[str, Path] = {}
        own = _own_paths()
        unified = _ROOT / "cgroup.controllers"
        if unified.exists() and "memory" in unified.read_text().split():
            base = _ROOT / own.get("", "/").lstrip("/") / name
            if self._make(base):
                with contextlib.suppress(OSError):
                    (base / "cgroup.subtree_control").write_text("+memory +pids +cpu")
                self.version, self.bases = 2, {"unified": base}
                return
        for controller in _V1:
            mount = _ROOT / controller
            if not mount.is_dir():
                continue
            base = mount / own.get(controller, "/").lstrip("/") / name
            if self._make(base):
                self.bases[controller] = base
        if "memory" in self.bases:
            self.version = 1
        elif not self.reason:
            self.reason = "no writable memory cgroup controller is mounted"

    def _make(self, base: Path) -> bool:
        try:
            base.mkdir(parents=True, exist_ok=True)
            return True
        except OSError as exc:
            self.reason = f"cannot create cgroups under {base.parent}: {exc.strerror}"
            return False

    @property
    def available(self) -> bool:
        return self.version is not None

    @property
    def controllers(self) -> list[str]:
        if self.version == 2:
            return ["memory", "pids", "cpu"]
        return sorted(self.bases)

    def create(self, name: str) -> Cgroup | None:
        if self.version is None:
            return None
        paths: dict[str, Path] = {}
        for controller, base in self.bases.items():
            try:
                (base / name).mkdir(exist_ok=True)
                paths[controller] = base / name
            except OSError:
                continue
        return Cgroup(paths, self.version) if paths else None

    def close(self) -> None:
        for base in self.bases.values():
            if not base.is_dir():
                continue
            for child in base.iterdir():
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                base.rmdir()


def _own_paths() -> dict[str, str]:
    own: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                own[c] = path
    return own
