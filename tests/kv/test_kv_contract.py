"""The one contract every KV backend keeps (MemoryKV and SQLiteKV via the
``kv`` fixture). Time moves only through ``kv_clock``."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from skiff.store.kv import KV, ConditionFailed, InvalidItem, Item
from skiff.store.kv_sqlite import SQLiteKV

NS = "app-a"


def test_put_then_get(kv: KV) -> None:
    """A put value comes back equal, at version 1, without TTL."""
    doc = {"name": "Ada", "tags": ["x", "ü"], "n": 1.5, "ok": True, "none": None}
    item = kv.put(NS, "user:1", doc)
    assert item == Item("user:1", doc, 1, None)
    assert kv.get(NS, "user:1") == item
    assert kv.get(NS, "user:2") is None


def test_stored_values_are_copies(kv: KV) -> None:
    """Mutating the caller's object after put, or a got value, changes nothing stored."""
    doc = {"n": [1]}
    kv.put(NS, "k", doc)
    doc["n"].append(2)
    got = kv.get(NS, "k")
    got.value["n"].append(3)
    assert kv.get(NS, "k").value == {"n": [1]}


def test_versions_grow_by_one_per_write(kv: KV) -> None:
    """Each write of a key bumps its version by one."""
    assert [kv.put(NS, "k", i).version for i in range(3)] == [1, 2, 3]


def test_namespaces_are_isolated(kv: KV) -> None:
    """The same key in two namespaces holds two values; queries and deletes stay in theirs."""
    kv.put("app-a", "k", "a")
    kv.put("app-b", "k", "b")
    assert kv.get("app-a", "k").value == "a" and kv.get("app-b", "k").value == "b"
    assert [i.value for i in kv.query("app-a").items] == ["a"]
    assert kv.delete("app-b", "k") is True
    assert kv.get("app-a", "k").value == "a"


def test_a_scoped_view_reaches_only_its_namespace(kv: KV) -> None:
    """An app's NamespacedKV reads, writes, queries and counts only its own keys."""
    kv.put("other", "secret", "s3cr3t")
    mine = kv.scoped("mine")
    mine.put("k", 1)
    assert mine.get("secret") is None
    assert mine.incr("k", 2) == 3
    assert [i.key for i in mine.query().items] == ["k"]
    assert mine.delete("k") is True
    assert kv.get("other", "secret").value == "s3cr3t"


def test_if_absent(kv: KV) -> None:
    """if_absent writes a new key once; a second try fails with 409 condition_failed."""
    kv.put(NS, "lock", "me", if_absent=True)
    with pytest.raises(ConditionFailed) as info:
        kv.put(NS, "lock", "you", if_absent=True)
    assert (info.value.code, info.value.status) == ("condition_failed", 409)
    assert kv.get(NS, "lock").value == "me"


def test_if_absent_succeeds_once_the_item_expired(kv: KV, kv_clock) -> None:
    """An expired item counts as absent, and its successor continues the version count."""
    kv.put(NS, "lock", "me", ttl=10)
    kv_clock.advance(10)
    item = kv.put(NS, "lock", "you", if_absent=True)
    assert (item.value, item.version) == ("you", 2)


def test_if_version(kv: KV) -> None:
    """if_version writes only over that version (optimistic locking)."""
    v1 = kv.put(NS, "doc", {"n": 1})
    v2 = kv.put(NS, "doc", {"n": 2}, if_version=v1.version)
    with pytest.raises(ConditionFailed):
        kv.put(NS, "doc", {"n": 3}, if_version=v1.version)
    with pytest.raises(ConditionFailed):
        kv.put(NS, "missing", 1, if_version=1)
    assert kv.get(NS, "doc") == v2


def test_delete(kv: KV) -> None:
    """delete says whether a live item was removed; with if_version it is conditional."""
    item = kv.put(NS, "k", 1)
    with pytest.raises(ConditionFailed):
        kv.delete(NS, "k", if_version=item.version + 1)
    assert kv.delete(NS, "k", if_version=item.version) is True
    assert kv.delete(NS, "k") is False
    with pytest.raises(ConditionFailed):
        kv.delete(NS, "k", if_version=1)


def test_ttl_expiry_hides_items(kv: KV, kv_clock) -> None:
    """An item with ttl=30 is visible for 30 seconds and then gone from get, query and delete."""
    item = kv.put(NS, "session", "s", ttl=30)
    assert item.expires_at == kv_clock.now + 30
    kv_clock.advance(29.9)
    assert kv.get(NS, "session").value == "s"
    kv_clock.advance(0.1)
    assert kv.get(NS, "session") is None
    kv.put(NS, "other", "o", ttl=1)
    kv_clock.advance(1)
    assert kv.query(NS).items == []
    assert kv.delete(NS, "other") is False


def test_expired_items_are_purged_lazily_or_in_bulk(kv: KV, kv_clock) -> None:
    """Reading an expired item deletes it; purge_expired deletes the rest and counts them."""
    for i in range(3):
        kv.put(NS, f"t{i}", i, ttl=5)
    kv.put("app-b", "t", 0, ttl=5)
    kv.put(NS, "forever", 1)
    kv_clock.advance(5)
    assert kv.get(NS, "t0") is None
    assert kv.purge_expired(NS) == 2
    assert kv.purge_expired() == 1
    assert kv.get(NS, "forever").value == 1


def test_put_without_ttl_removes_an_old_ttl(kv: KV, kv_clock) -> None:
    """A plain put replaces the item whole, TTL included."""
    kv.put(NS, "k", 1, ttl=5)
    kv.put(NS, "k", 2)
    kv_clock.advance(10)
    assert kv.get(NS, "k").value == 2


def test_query_orders_by_key_and_filters_by_prefix(kv: KV) -> None:
    """query returns live items whose key starts with the prefix, in code point order."""
    for key in ["user:b", "user:a", "user:ä", "user;", "usera", "order:1", "user:"]:
        kv.put(NS, key, key)
    assert [i.key for i in kv.query(NS, "user:").items] == ["user:", "user:a", "user:b",
                                                            "user:ä"]
    assert [i.key for i in kv.query(NS).items][:2] == ["order:1", "user:"]
    assert kv.query(NS, "nothing").items == []


def test_query_pages_with_cursors(kv: KV) -> None:
    """Pages of `limit` items chain through next_cursor and end with None."""
    for i in range(25):
        kv.put(NS, f"k{i:02d}", i)
    seen, cursor, pages = [], None, 0
    while True:
        page = kv.query(NS, "k", limit=10, cursor=cursor)
        seen += [i.value for i in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert (seen, pages) == (list(range(25)), 3)
    exact = kv.query(NS, "k", limit=25)
    assert len(exact.items) == 25 and exact.next_cursor is None


def test_query_skips_many_expired_items_and_still_fills_the_page(kv: KV, kv_clock) -> None:
    """Expired items between live ones do not shorten a page."""
    for i in range(100):
        kv.put(NS, f"k{i:03d}", i, ttl=None if i % 10 == 0 else 1)
    kv_clock.advance(1)
    page = kv.query(NS, limit=5)
    assert [i.value for i in page.items] == [0, 10, 20, 30, 40]
    assert [i.value for i in kv.query(NS, cursor=page.next_cursor).items] == [50, 60, 70, 80, 90]


def test_incr(kv: KV) -> None:
    """incr starts from 0, adds any integer step and returns the new value."""
    assert kv.incr(NS, "hits") == 1
    assert kv.incr(NS, "hits", 10) == 11
    assert kv.incr(NS, "hits", -12) == -1
    assert kv.get(NS, "hits") == Item("hits", -1, 3, None)


def test_incr_keeps_the_ttl(kv: KV, kv_clock) -> None:
    """A counter with a TTL (a rate-limit window) keeps expiring on time while counted."""
    kv.put(NS, "window", 0, ttl=60)
    kv_clock.advance(30)
    assert kv.incr(NS, "window") == 1
    kv_clock.advance(30)
    assert kv.get(NS, "window") is None
    assert kv.incr(NS, "window") == 1


def test_incr_refuses_a_non_integer(kv: KV) -> None:
    """incr on a string, float or boolean is a 409 not_an_integer; a bool step is refused."""
    for value in ["7", 1.5, True]:
        kv.put(NS, "v", value)
        with pytest.raises(InvalidItem) as info:
            kv.incr(NS, "v")
        assert (info.value.code, info.value.status) == ("not_an_integer", 409)
    with pytest.raises(InvalidItem):
        kv.incr(NS, "n", True)


def test_concurrent_incr_loses_no_update(kv: KV) -> None:
    """Eight threads incrementing 50 times each leave exactly 400."""
    def work() -> None:
        for _ in range(50):
            kv.incr(NS, "counter")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert kv.get(NS, "counter").value == 400


def test_concurrent_if_absent_has_one_winner(kv: KV) -> None:
    """When eight threads race to create a key, exactly one succeeds."""
    winners: list[int] = []
    barrier = threading.Barrier(8)

    def race(i: int) -> None:
        barrier.wait()
        try:
            kv.put(NS, "leader", i, if_absent=True)
            winners.append(i)
        except ConditionFailed:
            pass

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and kv.get(NS, "leader").value == winners[0]


@pytest.mark.parametrize("call, code", [
    (lambda kv: kv.put("", "k", 1), "invalid_item"),
    (lambda kv: kv.put(NS, "", 1), "invalid_item"),
    (lambda kv: kv.put(NS, "k" * 1025, 1), "invalid_item"),
    (lambda kv: kv.put(NS, "\ud800", 1), "invalid_item"),
    (lambda kv: kv.put(NS, "k", {1, 2}), "invalid_item"),
    (lambda kv: kv.put(NS, "k", float("nan")), "invalid_item"),
    (lambda kv: kv.put(NS, "k", 1, ttl=0), "invalid_item"),
    (lambda kv: kv.put(NS, "k", 1, if_version=0), "invalid_item"),
    (lambda kv: kv.put(NS, "k", "x" * 500_000), "value_too_large"),
    (lambda kv: kv.query(NS, limit=0), "invalid_item"),
    (lambda kv: kv.query(NS, cursor="garbage"), "invalid_cursor"),
    (lambda kv: kv.get(NS, 5), "invalid_item"),
], ids=["empty namespace", "empty key", "long key", "lone surrogate", "a set", "NaN", "zero ttl",
        "zero version", "too large", "zero limit", "garbage cursor", "int key"])
def test_bad_input_is_a_coded_error(kv: KV, call, code: str) -> None:
    """Bad namespaces, keys, values, TTLs, limits and cursors raise InvalidItem with a stable code."""
    with pytest.raises(InvalidItem) as info:
        call(kv)
    assert info.value.code == code


def test_clear_removes_a_namespace(kv: KV) -> None:
    """clear deletes one app's items and counts them, leaving other apps alone."""
    kv.put(NS, "a", 1)
    kv.put(NS, "b", 2)
    kv.put("app-b", "a", 3)
    assert kv.clear(NS) == 2
    assert kv.query(NS).items == [] and kv.get("app-b", "a").value == 3


def test_sqlite_kv_survives_reopening_and_shares_the_file(tmp_path: Path) -> None:
    """Items persist across reopen, and two connections to one file count without lost updates."""
    path = tmp_path / "kv.db"
    with_ttl = SQLiteKV(path)
    with_ttl.put(NS, "k", {"v": 1})
    with_ttl.close()
    stores = [SQLiteKV(path) for _ in range(3)]
    assert stores[0].get(NS, "k").value == {"v": 1}

    def work(store: SQLiteKV) -> None:
        for _ in range(40):
            store.incr(NS, "n")

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[1].get(NS, "n").value == 120
    for s in stores:
        s.close()
