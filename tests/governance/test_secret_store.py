"""The secret store: encryption at rest, versions, refs, the master key, and errors."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from skiff.governance import (
    InvalidSecret,
    MasterKeyError,
    SecretCorrupt,
    SecretInfo,
    SecretNotFound,
    SecretStore,
    SecretTooLarge,
    generate_master_key,
    load_master_key,
    parse_ref,
)

KEY = bytes(range(32))


@pytest.fixture
def store(tmp_path: Path):
    with SecretStore(tmp_path / "secrets.db", KEY) as s:
        yield s


def test_set_and_get_versions(store: SecretStore) -> None:
    """Each set is a new version; get reads the latest unless a version is pinned."""
    assert store.set("stripe-key", "sk_one") == 1
    assert store.set("stripe-key", "sk_two") == 2
    assert store.get("stripe-key") == "sk_two"
    assert store.get("stripe-key", 1) == "sk_one"
    assert [v.version for v in store.versions("stripe-key")] == [1, 2]
    assert store.set("other", "ünïcødé ✓\n") == 1
    assert store.get("other") == "ünïcødé ✓\n"


def test_rotate_requires_an_existing_secret(store: SecretStore) -> None:
    """Rotation of a typo'd name fails instead of creating a second secret."""
    with pytest.raises(SecretNotFound):
        store.rotate("db-pasword", "x")
    store.set("db-password", "a")
    assert store.rotate("db-password", "b") == 2
    assert store.get("db-password") == "b"


def test_list_shows_metadata_never_values(store: SecretStore) -> None:
    """list() is safe to print: names, versions and times only."""
    store.set("b.token", "value-b")
    store.set("a_key", "value-a1")
    store.set("a_key", "value-a2")
    infos = store.list()
    assert [(i.name, i.latest_version) for i in infos] == [("a_key", 2), ("b.token", 1)]
    assert infos[0].created <= infos[0].updated
    assert all(isinstance(i, SecretInfo) for i in infos)
    assert "value" not in repr(infos) + repr(store) + repr(store.versions("a_key"))


def test_delete_removes_all_versions(store: SecretStore) -> None:
    store.set("gone", "1")
    store.set("gone", "2")
    assert store.delete("gone") == 2
    assert store.list() == []
    with pytest.raises(SecretNotFound):
        store.delete("gone")


def test_missing_secret_error_says_what_to_run(store: SecretStore) -> None:
    """A missing secret is a 404 with a stable code and the command that fixes it."""
    with pytest.raises(SecretNotFound) as info:
        store.get("orders-db")
    error = info.value
    assert (error.status, error.code) == (404, "secret_not_found")
    assert "skiff secrets set orders-db" in error.message
    store.set("orders-db", "x")
    with pytest.raises(SecretNotFound) as info:
        store.get("orders-db", 7)
    assert "no version 7 (latest is 1)" in info.value.message
    assert "skiff secrets set orders-db" in info.value.message
    with pytest.raises(SecretNotFound):
        store.versions("nothing")


def test_resolve_ref_latest_and_pinned(store: SecretStore) -> None:
    """secret://NAME is the latest version; secret://NAME#N pins one."""
    store.set("api-token", "t1")
    store.set("api-token", "t2")
    assert store.resolve_ref("secret://api-token") == ("api-token", 2, "t2")
    name, version, value = store.resolve_ref("secret://api-token#1")
    assert (name, version, value) == ("api-token", 1, "t1")
    resolved = store.resolve_ref("secret://api-token")
    assert "t2" not in repr(resolved) and "t2" not in str(resolved)
    with pytest.raises(SecretNotFound):
        store.resolve_ref("secret://api-token#3")
    with pytest.raises(SecretNotFound) as info:
        store.resolve_ref("secret://missing")
    assert "skiff secrets set missing" in info.value.message


@pytest.mark.parametrize("ref", ["vault://x", "secret://", "secret://Upper", "secret://x#",
                                 "secret://x#0", "secret://x#v2", "secret://-x", "x"])
def test_bad_refs(ref: str) -> None:
    with pytest.raises(InvalidSecret) as info:
        parse_ref(ref)
    assert (info.value.status, info.value.code) == (422, "invalid_secret_ref")


@pytest.mark.parametrize("name", ["", "Upper", "-lead", ".lead", "has space", "slash/name",
                                  "x" * 254])
def test_bad_names(store: SecretStore, name: str) -> None:
    with pytest.raises(InvalidSecret) as info:
        store.set(name, "v")
    assert info.value.code == "invalid_secret_name"


def test_value_size_limit(store: SecretStore) -> None:
    with pytest.raises(SecretTooLarge) as info:
        store.set("big", "x" * (64 * 1024 + 1))
    assert (info.value.status, info.value.code) == (413, "secret_too_large")


def test_values_are_encrypted_at_rest(store: SecretStore, tmp_path: Path) -> None:
    """The database file never holds the plaintext, and is private to its owner."""
    store.set("plain-check", "very-recognizable-plaintext")
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("secrets.db"))
    assert b"very-recognizable-plaintext" not in raw
    assert stat.S_IMODE((tmp_path / "secrets.db").stat().st_mode) == 0o600


def test_ciphertexts_cannot_be_swapped(tmp_path: Path) -> None:
    """The AAD binds name and version: a row moved to another name or version fails to open."""
    path = tmp_path / "secrets.db"
    with SecretStore(path, KEY) as s:
        s.set("low", "harmless")
        s.set("high", "admin-password")
        s.set("high", "admin-password-2")
    db = sqlite3.connect(path)
    with db:
        row = db.execute("SELECT nonce, ciphertext FROM secret_versions "
                         "WHERE name='high' AND version=1").fetchone()
        db.execute("UPDATE secret_versions SET nonce=?, ciphertext=? WHERE name='low'", row)
        db.execute("UPDATE secret_versions SET nonce=?, ciphertext=? "
                   "WHERE name='high' AND version=2", row)
    db.close()
    with SecretStore(path, KEY) as s:
        with pytest.raises(SecretCorrupt) as info:
            s.get("low")
        assert info.value.code == "secret_corrupt"
        with pytest.raises(SecretCorrupt):
            s.get("high")
        assert s.get("high", 1) == "admin-password"


def test_reopen_with_the_same_key_and_refuse_another(tmp_path: Path) -> None:
    """Values survive a restart; a different master key is refused at open, clearly."""
    path = tmp_path / "secrets.db"
    with SecretStore(path, KEY) as s:
        s.set("kept", "v")
    with SecretStore(path, KEY) as s:
        assert s.get("kept") == "v"
    with pytest.raises(MasterKeyError) as info:
        SecretStore(path, bytes(32))
    assert info.value.code == "master_key_mismatch"
    with pytest.raises(MasterKeyError):
        SecretStore(tmp_path / "other.db", b"short")


def test_concurrent_sets_get_distinct_versions(store: SecretStore) -> None:
    """Writers never hand out the same version twice."""
    def writer(n: int) -> None:
        for i in range(10):
            store.set("counter", f"{n}-{i}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [v.version for v in store.versions("counter")] == list(range(1, 41))


def test_master_key_from_environment(tmp_path: Path) -> None:
    """$SKIFF_MASTER_KEY wins over the key file; standard and URL-safe base64 both work."""
    key = os.urandom(32)
    for text in (base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode()):
        assert load_master_key(tmp_path, environ={"SKIFF_MASTER_KEY": text}) == key
    assert not (tmp_path / "master.key").exists()
    for bad in ("not base64!", base64.b64encode(b"too short").decode()):
        with pytest.raises(MasterKeyError) as info:
            load_master_key(tmp_path, environ={"SKIFF_MASTER_KEY": bad})
        assert info.value.code == "master_key_invalid"
        assert bad not in info.value.message  # the key text is never echoed


def test_master_key_file_created_private_on_first_use(tmp_path: Path) -> None:
    """No env: <home>/master.key is made 0600 once and reused."""
    home = tmp_path / "home"
    key = load_master_key(home, environ={})
    path = home / "master.key"
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_master_key(home, environ={}) == key
    assert sorted(p.name for p in home.iterdir()) == ["master.key"]  # no temp file left


def test_master_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    """A key file group or others can read is refused, with the command that fixes it."""
    path = tmp_path / "master.key"
    path.write_text(generate_master_key())
    path.chmod(0o644)
    with pytest.raises(MasterKeyError) as info:
        load_master_key(tmp_path, environ={})
    assert info.value.code == "master_key_unsafe"
    assert f"chmod 600 {path}" in info.value.message
    path.chmod(0o600)
    assert len(load_master_key(tmp_path, environ={})) == 32


def test_open_a_home(tmp_path: Path) -> None:
    """SecretStore.open(home) is what the server and the CLI both use."""
    with SecretStore.open(tmp_path, environ={}) as s:
        s.set("x", "1")
    with SecretStore.open(tmp_path, environ={}) as s:
        assert s.get("x") == "1"
    assert (tmp_path / "master.key").exists() and (tmp_path / "secrets.db").exists()
