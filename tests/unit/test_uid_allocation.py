"""The host-wide uid registry: one uid per app across every home on the host,
never handed out twice, and a home whose uids another holds does not open."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from skiff.errors import SkiffError, UidConflict
from skiff.store import Store
from skiff.store.uids import FIRST_APP_UID, HostUids, UidRegistry


def _store(tmp_path, home: str, registry) -> Store:
    (tmp_path / home).mkdir(exist_ok=True)
    return Store(tmp_path / home / "skiff.db",
                 uids=UidRegistry(registry, tmp_path / home) if registry else None)


def test_two_homes_get_disjoint_uids(tmp_path):
    """Apps of two homes, even with the same names, never share a uid."""
    reg = tmp_path / "uids.db"
    a, b = _store(tmp_path, "a", reg), _store(tmp_path, "b", reg)
    ua = {a.uid_for(n) for n in ("web", "api", "cron")}
    ub = {b.uid_for(n) for n in ("web", "api", "cron")}
    assert len(ua) == len(ub) == 3
    assert not ua & ub
    assert min(ua | ub) >= FIRST_APP_UID
    assert a.uid_for("web") == a.uid_for("web")  # kept
    a.close()
    b.close()


def test_a_deleted_apps_uid_is_never_handed_out_again(tmp_path):
    """After release, the same name gets a fresh uid, and the old one goes to nobody."""
    reg = tmp_path / "uids.db"
    a, b = _store(tmp_path, "a", reg), _store(tmp_path, "b", reg)
    old = a.uid_for("web")
    a.release_uid("web")
    new = a.uid_for("web")
    assert new != old
    assert old not in {b.uid_for(f"app{i}") for i in range(5)}
    a.close()
    b.close()


def test_without_a_registry_released_uids_are_not_reused(tmp_path):
    """Unprivileged (no registry): uids are per home, still never reused."""
    a = _store(tmp_path, "a", None)
    first = a.uid_for("web")
    a.release_uid("web")
    assert a.uid_for("web") != first
    a.close()


def test_a_copied_home_refuses_to_open_naming_the_other(tmp_path):
    """A home whose recorded uids another home holds raises UidConflict."""
    reg = tmp_path / "uids.db"
    a = _store(tmp_path, "a", reg)
    uid = a.uid_for("web")
    a.close()
    (tmp_path / "b").mkdir()
    for name in os.listdir(tmp_path / "a"):
        shutil.copy(tmp_path / "a" / name, tmp_path / "b" / name)
    with pytest.raises(UidConflict) as info:
        _store(tmp_path, "b", reg)
    assert str((tmp_path / "a").resolve()) in info.value.message
    assert str(uid) in info.value.message
    _store(tmp_path, "a", reg).close()  # the owner still opens


def test_uids_recorded_before_the_registry_are_claimed(tmp_path):
    """A home from before the registry registers its uids on first open."""
    reg = tmp_path / "uids.db"
    old = _store(tmp_path, "a", None)
    uid = old.uid_for("web")
    old.close()
    _store(tmp_path, "a", reg).close()
    b = _store(tmp_path, "b", reg)
    assert b.uid_for("web") != uid
    b.close()


def test_host_uids_skips_passwd_subuid_ranges_and_processes(tmp_path, monkeypatch):
    """Allocation steps over uids in use on the host."""
    host = HostUids()
    assert 0 in host  # root: in /etc/passwd and running
    host.uids.add(FIRST_APP_UID)
    host.ranges.append(range(FIRST_APP_UID + 1, FIRST_APP_UID + 65_537))
    assert host.next_free(FIRST_APP_UID) == FIRST_APP_UID + 65_537


@pytest.mark.skipif(os.geteuid() != 0, reason="running a process as another uid needs root")
def test_a_uid_a_running_process_uses_is_skipped(tmp_path):
    reg = tmp_path / "uids.db"
    probe = UidRegistry(reg, tmp_path / "probe")
    taken = probe.allocate("x")  # the next one the registry would give
    probe.release("x")
    squatter = subprocess.Popen(["sleep", "60"], user=taken + 1)
    try:
        store = _store(tmp_path, "a", reg)
        got = store.uid_for("web")
        store.close()
        assert got != taken + 1 and got > taken
    finally:
        squatter.kill()
        squatter.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="the registry is used only as root")
def test_an_unusable_registry_path_is_a_clear_error(tmp_path):
    from skiff.store.uids import host_registry

    (tmp_path / "file").write_text("")
    with pytest.raises(SkiffError) as info:
        host_registry(tmp_path / "file" / "uids.db", tmp_path / "home")
    assert info.value.code == "uid_registry_unavailable"
    assert "SKIFF_UID_REGISTRY" in info.value.message
