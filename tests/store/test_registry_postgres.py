"""What the Postgres registry adds over the contract: uids shared by a cluster of hosts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from skiff.store.registry import RevisionRow
from skiff.store.registry_postgres import PostgresRegistry
from skiff.store.uids import UidRegistry


def test_a_new_uid_is_free_on_the_host_and_in_the_cluster(pg_database, tmp_path: Path) -> None:
    """The host registry already gave a uid to another home: the cluster picks another one,
    and a second node of the cluster (another home) gets the same uid for the app."""
    hosts = tmp_path / "uids.db"
    other = UidRegistry(hosts, tmp_path / "other-home")
    held = other.allocate("someone-else")
    node_a = PostgresRegistry(pg_database, uids=UidRegistry(hosts, tmp_path / "a"))
    uid = node_a.uid_for("app")
    assert uid != held
    node_a.close()
    other.release("someone-else")
    other.close()
    node_b = PostgresRegistry(pg_database, uids=UidRegistry(tmp_path / "uids-b.db",
                                                            tmp_path / "b"))
    assert node_b.uid_for("app") == uid
    node_b.close()


def _heard(registry: PostgresRegistry) -> tuple[list, threading.Event]:
    heard: list[str | None] = []
    got = threading.Event()

    def listener(app: str | None) -> None:
        heard.append(app)
        got.set()

    registry.add_listener(listener)
    return heard, got


def _wait(predicate, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 20
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_listeners_hear_what_another_node_changes(pg_database) -> None:
    """A listener is told None once listening (reconcile everything), then the name of
    each app another node makes current, deletes, grants or revokes a route of."""
    here, there = PostgresRegistry(pg_database), PostgresRegistry(pg_database)
    try:
        heard, _ = _heard(here)
        _wait(here.listening.is_set, "the LISTEN")
        _wait(lambda: heard == [None], "the first reconcile signal")
        there.put_revision(RevisionRow("a", "r1", {}, "/x", "env", 1.0))
        there.set_current("a", "r1")
        there.grant_route("b", None, "/b")
        there.grant_route("b", None, "/b")  # nothing changed: no signal
        there.revoke_route("b", None, "/b")
        there.revoke_route("b", None, "/nothing")  # nothing changed: no signal
        there.delete_app("a")
        there.set_current("end", "r1")  # signals arrive in commit order: this one comes last
        _wait(lambda: heard[-1:] == ["end"], "the last signal")
        assert heard == [None, "a", "b", "b", "a", "end"]
    finally:
        here.close()
        there.close()


def test_the_listener_reconciles_everything_after_listening_again(pg_database) -> None:
    """The listener's connection is cut (a database restart, a failover): it listens
    again and says None, since what was committed meanwhile notified no one."""
    registry = PostgresRegistry(pg_database)
    try:
        heard, _ = _heard(registry)
        _wait(lambda: heard == [None], "the first reconcile signal")
        with pg_database.connection() as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE query LIKE 'LISTEN skiff_registry%%' AND pid <> pg_backend_pid()")
        _wait(lambda: heard == [None, None], "the reconcile signal after the cut")
        registry.set_current("a", "r1")
        _wait(lambda: heard == [None, None, "a"], "a signal on the new connection")
    finally:
        registry.close()
