"""Quotas per owner: how many apps an owner may run, how much memory one of its
apps may ask for (``resources.memoryMB``), and how many instances its apps may
run together (``scaling.maxInstances`` summed). The one place quotas are
compared: the Governor asks :func:`excess` on every deploy, rollback and
restore; over a quota the deploy fails with 422 ``quota_exceeded`` naming the
limit and the current use, or, with approvals on, waits for an operator as the
elevated scope ``quota:<limit>`` (approved once for an app, remembered).

Limits come from the platform's configuration (``SKIFF_QUOTA_APPS``,
``SKIFF_QUOTA_MEMORY_MB``, ``SKIFF_QUOTA_INSTANCES``; 0 is no limit) and apply
to every owner alike. Pure: golden-tested in tests/governance/test_quotas.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from skiff.errors import ManifestError
from skiff.manifest import Manifest


class QuotaExceeded(ManifestError):
    code = "quota_exceeded"


@dataclass(frozen=True)
class Quota:
    apps: int = 0  # apps per owner; 0: no limit
    memory_mb: int = 0  # memoryMB per app
    instances: int = 0  # maxInstances summed over the owner's apps

    @property
    def on(self) -> bool:
        return bool(self.apps or self.memory_mb or self.instances)

    def to_dict(self) -> dict:
        return {"apps": self.apps or None, "memory_mb": self.memory_mb or None,
                "instances": self.instances or None}


@dataclass(frozen=True)
class Excess:
    limit: str  # "apps", "memory_mb" or "instances"
    quota: int
    used: int  # by the owner's other apps (memory: 0, it is per app)
    asked: int  # what this deploy adds

    @property
    def scope(self) -> str:
        return f"quota:{self.limit}"

    def to_dict(self) -> dict:
        return {"limit": self.limit, "quota": self.quota, "used": self.used,
                "asked": self.asked}

    def message(self, owner: str) -> str:
        who = owner or "apps without an owner"
        if self.limit == "memory_mb":
            return (f"resources.memoryMB {self.asked} is over the quota of {self.quota} MB per "
                    f"app of {who}")
        if self.limit == "apps":
            return f"{who} runs {self.used} app(s) of a quota of {self.quota}"
        return (f"{who}'s apps run up to {self.used} instances; scaling.maxInstances "
                f"{self.asked} would make {self.used + self.asked}, over the quota of "
                f"{self.quota}")


def usage(owned: Iterable[Manifest]) -> dict[str, int]:
    """What an owner's apps hold now: apps and maxInstances summed."""
    apps = list(owned)
    return {"apps": len(apps), "instances": sum(m.spec.scaling.max_instances for m in apps)}


def excess(quota: Quota, manifest: Manifest, running: Iterable[Manifest]) -> list[Excess]:
    """The quotas ``manifest`` would exceed, given every app running now (the app it
    replaces among them is not counted twice)."""
    if not quota.on:
        return []
    owner = manifest.metadata.owner or ""
    others = [m for m in running
              if m.name != manifest.name and (m.metadata.owner or "") == owner]
    use = usage(others)
    out = []
    if quota.apps and use["apps"] + 1 > quota.apps:
        out.append(Excess("apps", quota.apps, use["apps"], 1))
    memory = manifest.spec.resources.memory_mb
    if quota.memory_mb and memory > quota.memory_mb:
        out.append(Excess("memory_mb", quota.memory_mb, 0, memory))
    asked = manifest.spec.scaling.max_instances
    if quota.instances and use["instances"] + asked > quota.instances:
        out.append(Excess("instances", quota.instances, use["instances"], asked))
    return out


def refusal(manifest: Manifest, found: list[Excess]) -> QuotaExceeded:
    owner = manifest.metadata.owner or ""
    return QuotaExceeded(
        f"deploy of {manifest.name} is over its owner's quota: "
        + "; ".join(e.message(owner) for e in found)
        + ". Lower it, remove an app (`skiff rm APP`), or ask an operator to raise "
          "SKIFF_QUOTA_*", quotas=[e.to_dict() for e in found], owner=owner or None)
