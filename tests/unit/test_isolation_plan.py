"""What an app's minimal root is made of (the plan); the hostile suite checks
what the app then sees."""

from __future__ import annotations

import sys
from pathlib import Path

import skiff
from skiff.instance.isolation import Support, plan_for, zygote_plan
from skiff.instance.sandbox import SYSTEM_PATHS, _covered

ROOT = Path(__file__).resolve().parents[2]


def _support(root: bool) -> Support:
    return Support(root=root, seccomp=True, seccomp_reason="", cgroups="cgroup v1",
                   cgroup_ok=True, cgroup_dirs=("/sys/fs/cgroup/memory/skiff-x",))


def _plan(tmp_path, root=True, **kw):
    return plan_for(_support(root), "strict", uid=100_001, home=tmp_path / "home",
                    code_dir=tmp_path / "home" / "revisions" / "a" / "r1",
                    python=sys.executable, tmp_mb=8, **kw)


def test_the_root_holds_the_interpreter_skiff_and_the_code_only(tmp_path):
    """System dirs, both prefixes, skiff's package and the code; never the home,
    the checkout around skiff, or / itself."""
    plan = _plan(tmp_path)
    binds = set(plan.binds)
    assert set(SYSTEM_PATHS) <= binds
    assert {sys.prefix, sys.base_prefix, str(tmp_path / "home" / "revisions" / "a" / "r1"),
            str(Path(skiff.__file__).resolve().parent)} <= binds
    for forbidden in ("/", str(tmp_path / "home"), str(ROOT), "/etc", "/var", "/home"):
        assert forbidden not in binds
    assert plan.hide[0] == str(tmp_path / "home")  # covered should a bind contain it
    assert plan.writable == ()
    assert plan.mount_ns and plan.drop_privileges


def test_a_data_dir_is_the_one_writable_path(tmp_path):
    plan = _plan(tmp_path, data_dir=tmp_path / "data", data_device="/dev/loop3")
    assert plan.writable == ()  # nothing of the host is bound read-write...
    assert (plan.data_dir, plan.data_device) == (str(tmp_path / "data"), "/dev/loop3")
    assert str(tmp_path / "data") not in plan.binds  # ...the volume is mounted there instead


def test_unprivileged_platforms_get_no_root_of_their_own(tmp_path):
    plan = _plan(tmp_path, root=False)
    assert not plan.mount_ns and plan.binds == () and plan.hide == ()


def test_an_app_zygote_also_gets_its_cgroup_directories(tmp_path):
    """Its forks attach themselves to their cgroups, which are made later."""
    plan = zygote_plan(_support(True), _plan(tmp_path))
    assert plan.writable == ("/sys/fs/cgroup/memory/skiff-x",)


def test_covered_means_equal_or_below():
    assert _covered("/usr/lib", ["/usr"])
    assert _covered("/usr", ["/usr"])
    assert not _covered("/usrx", ["/usr"])
    assert not _covered("/", ["/usr"])
