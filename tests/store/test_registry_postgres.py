"""What the Postgres registry adds over the contract: uids shared by a cluster of hosts."""

from __future__ import annotations

from pathlib import Path

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
