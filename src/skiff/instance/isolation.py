"""Which sandbox layers this machine can enforce, and the plan for one app.

``Support.probe()`` runs once at start; ``skiff doctor`` and the admin API
show its findings, so an operator knows exactly what is and is not enforced.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import skiff
from skiff.instance import seccomp
from skiff.instance.cgroups import CgroupManager
from skiff.instance.sandbox import Plan


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

    @classmethod
    def probe(cls, cgroups: CgroupManager) -> Support:
        ok, why = seccomp.supported()
        cg = (f"cgroup v{cgroups.version} ({', '.join(cgroups.controllers)})"
              if cgroups.available else f"unavailable: {cgroups.reason}")
        return cls(root=os.geteuid() == 0, seccomp=ok, seccomp_reason=why, cgroups=cg,
                   cgroup_ok=cgroups.available)

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
            Layer("mount_ns", self.root, "code read-only, private /tmp and /proc; platform "
                  "state and /root hidden" if self.root else need_root),
            Layer("pid_ns", self.root, "cannot see or signal other processes" if self.root
                  else need_root),
            Layer("net_ns", self.root, "loopback only; egress through the proxy"
                  if self.root else need_root),
            Layer("seccomp", self.seccomp, "ptrace, mount, bpf, kexec, modules, namespaces "
                  "and more refused" if self.seccomp else self.seccomp_reason),
        ]


def plan_for(support: Support, level: str, *, uid: int, home: Path, code_dir: Path,
             python: str, tmp_mb: int, egress_socket: str = "") -> Plan | None:
    """The sandbox of one app's instances at isolation ``level``; None for ``none``."""
    if level == "none":
        return None
    hidden = [str(home), "/root"]
    keep = {str(code_dir), str(Path(python).parent.parent), sys.prefix, sys.base_prefix,
            str(Path(skiff.__file__).resolve().parent.parent)}
    # only what lies under a hidden directory (or the private /tmp) needs binding back
    covered = [*hidden, "/tmp"]
    keep = {k for k in keep if any(k == h or k.startswith(h + "/") for h in covered)}
    root = support.root
    return Plan(uid=uid if root else 0, gid=uid if root else 0, drop_privileges=root,
                mount_ns=root, hide=tuple(hidden) if root else (), keep=tuple(sorted(keep)),
                tmp_mb=tmp_mb, seccomp=support.seccomp,
                egress_socket=egress_socket if level == "strict" and root else "")
