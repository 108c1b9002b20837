"""Which sandbox layers this machine can enforce, and the plan for one app.

``Support.probe()`` runs once at start; ``skiff doctor`` and the admin API
show its findings, so an operator knows exactly what is and is not enforced.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import msgspec

from skiff.instance import seccomp
from skiff.instance.cgroups import CgroupManager
from skiff.instance.sandbox import Plan, interpreter_prefixes, own_binds


@dataclass(frozen=True)
class Layer:
    name: str
    active: bool
    detail: str


@dataclass(frozen=True)
class Support:
    root: bool
    seccomp: bool
    seccomp_reason: str
    cgroups: str  # "cgroup v1 (memory, pids, cpu)" or why not
    cgroup_ok: bool
    cgroup_dirs: tuple[str, ...] = ()  # this platform's cgroup directories

    @classmethod
    def probe(cls, cgroups: CgroupManager) -> Support:
        ok, why = seccomp.supported()
        cg = (f"cgroup v{cgroups.version} ({', '.join(cgroups.controllers)})"
              if cgroups.available else f"unavailable: {cgroups.reason}")
        return cls(root=os.geteuid() == 0, seccomp=ok, seccomp_reason=why, cgroups=cg,
                   cgroup_ok=cgroups.available,
                   cgroup_dirs=tuple(str(p) for p in cgroups.bases.values()))

    @property
    def namespaces(self) -> bool:
        return self.root

    def layers(self) -> list[Layer]:
        need_root = "needs root (Skiff runs unprivileged here)"
        return [
            Layer("uid", self.root, "own unprivileged uid/gid per app, no capabilities"
                  if self.root else need_root),
            Layer("no_new_privs", True, "set in every instance"),
            Layer("cgroups", self.cgroup_ok, self.cgroups if self.cgroup_ok else
                  f"{self.cgroups}; memory falls back to an address-space rlimit"),
            Layer("mount_ns", self.root, "a minimal root of its own (pivot_root): system "
                  "libraries, interpreter, code read-only; private /tmp, /var/tmp, /dev/shm, "
                  "/proc; nothing else of the host" if self.root else need_root),
            Layer("pid_ns", self.root, "cannot see or signal other processes" if self.root
                  else need_root),
            Layer("net_ns", self.root, "loopback only; egress through the proxy"
                  if self.root else need_root),
            Layer("seccomp", self.seccomp, "ptrace, mount, bpf, kexec, modules, namespaces "
                  "and more refused" if self.seccomp else self.seccomp_reason),
            Layer("data_quota", volumes_supported(self.root), "resources.diskMB: an ext4 image "
                  "per app on a loop device (ENOSPC past diskMB)" if volumes_supported(self.root)
                  else "no quota on data directories: needs root, mkfs.ext4, e2fsck, resize2fs "
                  "and mount"),
        ]


def volumes_supported(root: bool) -> bool:
    """Whether apps' data directories can be quota'd volumes here (see
    skiff.platform.datadirs)."""
    return root and all(shutil.which(t) for t in ("mkfs.ext4", "e2fsck", "resize2fs", "mount",
                                                  "umount"))


def plan_for(support: Support, level: str, *, uid: int, home: Path, code_dir: Path,
             python: str, tmp_mb: int, egress_socket: str = "",
             data_dir: Path | None = None, data_device: str = "") -> Plan | None:
    """The sandbox of one app's instances at isolation ``level``; None for ``none``.

    The root holds, read-only: the system directories, the zygote's interpreter
    with its prefix and base prefix (a dependency environment's), the platform's
    own (the targets of the runtime links in an environment: msgspec), skiff's
    package directory alone (not the checkout around it) and the app's code;
    read-write only its data directory. ``home`` (the platform's state) is
    covered should any of those contain it."""
    if level == "none":
        return None
    root = support.root
    # own_binds: the platform's interpreter and skiff; SSL_CERT_* (instances inherit them)
    binds = {*own_binds(), *interpreter_prefixes(python), str(code_dir)}
    return Plan(uid=uid if root else 0, gid=uid if root else 0, drop_privileges=root,
                mount_ns=root, binds=tuple(sorted(binds)) if root else (),
                data_dir=str(data_dir) if data_dir and root else "",
                data_device=data_device if data_dir and root else "",
                hide=(str(home), "/root") if root else (), tmp_mb=tmp_mb,
                seccomp=support.seccomp,
                egress_socket=egress_socket if level == "strict" and root else "")


def zygote_plan(support: Support, plan: Plan) -> Plan:
    """An app zygote's own plan: as its instances', and its cgroup directories
    writable, because instances forked from it attach themselves to their
    cgroups (files delegated to the app's uid, nothing else there is)."""
    return msgspec.structs.replace(plan, writable=(*plan.writable, *support.cgroup_dirs))
