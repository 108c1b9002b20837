"""Per-instance cgroups: memory, pids and CPU limits enforced by the kernel.

cgroup v2 is used where its unified hierarchy offers the memory controller;
otherwise v1 (one hierarchy per controller). Cgroups are made ahead of demand,
with the spare instances, because creating them per request costs 15-25 ms
at p99 here. An instance attaches *itself* (it writes its pid into the
procs files before running anything else), so its children are born inside.
When nothing is writable, instances fall back to rlimits and ``reason`` says why.

Killing is by the kernel's list of a cgroup's processes, never by a pid an app
process reported. On v1 there is no ``cgroup.kill``: a fork bomb could race a
read-then-kill loop, so the freezer controller stops the group first (and the
loop repeats until the group is empty). A platform names its directory
``skiff-<pid>-<hex>``; a later platform removes the directories (and kills what
is left in them) of platforms whose pid is dead, and nothing else: other Skiff
servers may share the machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")
_V1 = ("memory", "pids", "cpu", "freezer")
_CFS_PERIOD = 100_000
_OWNED = re.compile(r"^skiff-(\d+)-[0-9a-f]+$")  # a platform's directory: its pid in the name
# freezing is asynchronous on v1 (FREEZING, then FROZEN); a group that does not
# settle within this (one budget per kill) is killed anyway, and the kill repeats
# while new processes show up (the pids limit bounds how many can)
_FREEZE_WAIT = 0.2  # seconds
_KILL_ROUNDS = 50


def owned_name() -> str:
    """The directory name for this platform process's cgroups."""
    return f"skiff-{os.getpid()}-{uuid.uuid4().hex[:8]}"


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

    def undelegate(self) -> None:
        """Take the delegation back once the instance has joined: every instance of an
        app shares its uid, so a delegated cgroup.procs let one move into another's."""
        self.delegate(os.geteuid(), os.getegid())  # the platform's, as created

    def attach(self, pid: int) -> None:
        for procs in self.procs:
            Path(procs).write_text(str(pid))

    def holds(self, pid: int) -> bool:
        """Whether ``pid`` is in this cgroup in every hierarchy (v1 has one per controller)."""
        for procs in self.procs:
            try:
                if str(pid) not in Path(procs).read_text().split():
                    return False
            except OSError:
                return False
        return True

    def pids(self) -> set[int]:
        """The processes in this cgroup, as the kernel lists them."""
        found: set[int] = set()
        for procs in self.procs:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(x) for x in Path(procs).read_text().split())
        return found

    def empty(self) -> bool:
        return not self.pids()

    def _freeze(self, frozen: bool, deadline: float = 0.0) -> bool:
        path = self.paths.get("freezer") if self.version == 1 else self.paths.get("unified")
        if path is None:
            return False
        name, value = (("freezer.state", "FROZEN" if frozen else "THAWED") if self.version == 1
                       else ("cgroup.freeze", "1" if frozen else "0"))
        try:
            (path / name).write_text(value)
        except OSError:
            return False
        if frozen and self.version == 1:
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    if (path / name).read_text().strip() == "FROZEN":
                        break
                time.sleep(0.001)
        return True

    def kill_all(self) -> int:
        """SIGKILL every process in the cgroup: the whole instance, however many
        processes it made, whatever namespace they are in. Frozen first, so none
        can fork while the list is read; repeated until the list stops growing."""
        unified = self.paths.get("unified")
        if unified is not None and (unified / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (unified / "cgroup.kill").write_text("1")
                return len(self.pids())
        killed: set[int] = set()
        # one budget for the whole call: this runs on the gateway's event loop
        deadline = time.monotonic() + _FREEZE_WAIT
        for _ in range(_KILL_ROUNDS):
            frozen = self._freeze(True, deadline)
            pids = self.pids() - killed
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            if frozen:
                self._freeze(False)  # SIGKILL takes effect once thawed
            if not pids:
                break
        return len(killed)

    def memory_peak(self) -> int | None:
        """The most memory the cgroup has held, in bytes (the kernel's word: v2
        ``memory.peak``, else ``memory.current``; v1 ``memory.max_usage_in_bytes``)."""
        if self.version == 2:
            path, names = self.paths.get("unified"), ("memory.peak", "memory.current")
        else:
            path, names = self.paths.get("memory"), ("memory.max_usage_in_bytes",)
        if path is None:
            return None
        for name in names:
            try:
                return int((path / name).read_text())
            except (OSError, ValueError):
                continue
        return None

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

    def memory_bytes(self) -> int | None:
        """What the kernel charges the group now (page cache included, as the limit
        counts it); None when the memory controller is not ours."""
        if self.version == 2:
            path, name = self.paths.get("unified"), "memory.current"
        else:
            path, name = self.paths.get("memory"), "memory.usage_in_bytes"
        if path is None:
            return None
        try:
            return int((path / name).read_text().strip())
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        for p in self.paths.values():
            with contextlib.suppress(OSError):
                p.rmdir()


class CgroupManager:
    """Owns one directory of cgroups (per controller) for this platform process."""

    def __init__(self, name: str) -> None:
        self.version: int | None = None
        self.reaped = 0  # stale cgroups of dead platforms removed at start
        self.reason = ""
        self.bases: dict[str, Path] = {}
        own = _own_paths()
        unified = _ROOT / "cgroup.controllers"
        if unified.exists() and "memory" in unified.read_text().split():
            base = _ROOT / own.get("", "/").lstrip("/") / name
            self.reaped += _reap_stale({"unified": base.parent}, 2)
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
            self.reaped += _reap_stale({c: b.parent for c, b in self.bases.items()}, 1)
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

    def close(self, wait: float = 5.0) -> None:
        """Kill whatever is left in this platform's cgroups and remove them all."""
        if self.version is not None:
            _remove_tree(dict(self.bases), self.version, wait)


def _children(paths: dict[str, Path]) -> list[str]:
    names: set[str] = set()
    for base in paths.values():
        with contextlib.suppress(OSError):
            names.update(c.name for c in base.iterdir() if c.is_dir())
    return sorted(names)


def _remove_tree(paths: dict[str, Path], version: int, wait: float) -> None:
    """Kill every process in one cgroup (its directory in each controller) and
    below, then rmdir them; the kernel refuses rmdir until the last task is gone."""
    paths = {c: p for c, p in paths.items() if p.is_dir()}
    if not paths:
        return
    for name in _children(paths):
        _remove_tree({c: p / name for c, p in paths.items()}, version, wait)
    group = Cgroup(paths, version)
    deadline = time.monotonic() + wait
    while True:
        group.kill_all()
        for p in list(paths.values()):
            with contextlib.suppress(OSError):
                p.rmdir()
        if not any(p.is_dir() for p in paths.values()) or time.monotonic() >= deadline:
            return
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap_stale(parents: dict[str, Path], version: int) -> int:
    """Remove the cgroups of platforms that are dead (their pid is in the name),
    left behind by a kill -9, and kill what still runs in them. A live pid, even
    a reused one, is left alone: it may be another Skiff server on this machine."""
    reaped = 0
    for name in _children(parents):
        m = _OWNED.match(name)
        if m is None or _alive(int(m.group(1))):
            continue
        _remove_tree({c: p / name for c, p in parents.items()}, version, wait=1.0)
        reaped += 1
    return reaped


def _own_paths() -> dict[str, str]:
    own: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                own[c] = path
    return own
