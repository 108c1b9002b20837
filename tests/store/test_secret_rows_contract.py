"""The one contract every SecretRows backend keeps (secrets.db's SQLite and
PostgresSecretRows via the ``secret_rows`` fixture), and the SecretStore above
each: values sealed above, rows stored below."""

from __future__ import annotations

import threading

import pytest

from skiff.governance.secret_rows import SecretRows
from skiff.governance.secrets import (
    MasterKeyError,
    SecretNotFound,
    SecretStore,
    generate_master_key,
)
from skiff.governance.secrets import decode_master_key as _decode


def _seal(tag: bytes):
    return lambda version: (b"n" * 12, tag + str(version).encode())


def test_versions_are_appended_from_one(secret_rows: SecretRows) -> None:
    """add stores version 1, 2, ...; get reads the latest or a given one."""
    assert secret_rows.add("db", _seal(b"v"), must_exist=False) == 1
    assert secret_rows.add("db", _seal(b"v"), must_exist=True) == 2
    assert secret_rows.get("db", None) == (2, b"n" * 12, b"v2")
    assert secret_rows.get("db", 1) == (1, b"n" * 12, b"v1")
    assert secret_rows.get("db", 3) is None and secret_rows.get("nope", None) is None
    assert secret_rows.latest("db") == 2 and secret_rows.latest("nope") is None
    assert [v for v, _ in secret_rows.versions("db")] == [1, 2]


def test_must_exist_stores_nothing_for_a_new_name(secret_rows: SecretRows) -> None:
    """A rotate of a typo creates no secret."""
    assert secret_rows.add("typo", _seal(b"v"), must_exist=True) is None
    assert secret_rows.names() == []


def test_names_and_delete(secret_rows: SecretRows) -> None:
    """names summarises each secret by name; delete removes every version of one."""
    for name in ("b", "a", "b"):
        secret_rows.add(name, _seal(b"v"), must_exist=False)
    assert [(n, latest) for n, latest, _, _ in secret_rows.names()] == [("a", 1), ("b", 2)]
    assert secret_rows.delete("b") == 2
    assert secret_rows.delete("b") == 0
    assert [n for n, *_ in secret_rows.names()] == ["a"]


def test_concurrent_writers_get_distinct_versions(secret_rows: SecretRows) -> None:
    """Eight threads adding to one secret at once get versions 1..8, none lost."""
    got: list[int] = []
    threads = [threading.Thread(target=lambda: got.append(
        secret_rows.add("s", _seal(b"v"), must_exist=False))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 9))


def test_meta_is_created_once(secret_rows: SecretRows) -> None:
    """The first meta call stores create()'s row; later ones read it back, not create."""
    assert secret_rows.meta("check", lambda: (b"a" * 12, b"first")) == (b"a" * 12, b"first")
    assert secret_rows.meta("check", lambda: (b"b" * 12, b"second")) == (b"a" * 12, b"first")


def test_a_secret_store_over_the_rows(secret_rows: SecretRows) -> None:
    """SecretStore seals above any backend, and refuses a second key over the same rows."""
    key = _decode(generate_master_key(), source="test")
    store = SecretStore(secret_rows, key)
    assert store.set("api-key", "s3cr3t") == 1
    assert store.rotate("api-key", "n3w") == 2
    assert store.get("api-key") == "n3w" and store.get("api-key", 1) == "s3cr3t"
    assert store.resolve_ref("secret://api-key#1").value == "s3cr3t"
    with pytest.raises(SecretNotFound):
        store.rotate("nope", "x")
    _, _, sealed = secret_rows.get("api-key", 2)
    assert b"n3w" not in sealed
    with pytest.raises(MasterKeyError) as err:
        SecretStore(secret_rows, _decode(generate_master_key(), source="test"))
    assert err.value.code == "master_key_mismatch"
