"""The CPU lines of Cgroup.limit: the quota is written when it changes and only then (each
cgroupfs write runs on the gateway's event loop), against the kernel's default period."""

from __future__ import annotations

from pathlib import Path

from skiff.instance.cgroups import Cgroup


def v1(tmp_path: Path) -> tuple[Cgroup, Path]:
    paths = {c: tmp_path / c for c in ("memory", "pids", "cpu")}
    for p in paths.values():
        p.mkdir()
    return Cgroup(paths, 1), paths["cpu"]


def test_the_quota_is_written_once_and_the_period_never(tmp_path):
    """A spare's defaults write the quota; a bind that changes only memory leaves it alone."""
    cgroup, cpu = v1(tmp_path)
    cgroup.limit(256, 1.0, 64)
    assert (cpu / "cpu.cfs_quota_us").read_text() == "100000"
    assert not (cpu / "cpu.cfs_period_us").exists()
    (cpu / "cpu.cfs_quota_us").unlink()
    cgroup.limit(128, 1.0, 64)
    assert not (cpu / "cpu.cfs_quota_us").exists()
    assert (tmp_path / "memory" / "memory.limit_in_bytes").read_text() == str(128 << 20)


def test_a_new_cpu_share_is_written(tmp_path):
    """cpu 0.5 is half of each 100 ms period."""
    cgroup, cpu = v1(tmp_path)
    cgroup.limit(256, 1.0, 64)
    cgroup.limit(256, 0.5, 64)
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"


def test_v2_writes_cpu_max_when_it_changes(tmp_path):
    """On cgroup v2 the quota and period go to cpu.max together."""
    cgroup = Cgroup({"unified": tmp_path}, 2)
    cgroup.limit(256, 2.0, 64)
    assert (tmp_path / "cpu.max").read_text() == "200000 100000"
    (tmp_path / "cpu.max").unlink()
    cgroup.limit(512, 2.0, 64)
    assert not (tmp_path / "cpu.max").exists()
