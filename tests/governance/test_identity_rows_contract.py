"""The contract every IdentityRows backend keeps (governance.db's SQLite and
PostgresIdentityRows), and Identities above each: tokens hashed, expiring, revocable."""

from __future__ import annotations

import threading

import pytest

from skiff.errors import Unauthorized
from skiff.governance import Identities, Role, TokenExpired
from skiff.governance.identity import digest
from skiff.governance.identity_rows import IdentityRows, TokenRow


def test_users_groups_and_members(identity_rows: IdentityRows) -> None:
    """add_user creates the user and its groups once; groups list their members."""
    assert identity_rows.add_user("alice", ["shop", "ops"], 1.0) is True
    assert identity_rows.add_user("alice", ["shop"], 2.0) is False
    assert identity_rows.add_user("bob", ["shop"], 3.0) is True
    assert identity_rows.add_group("empty", 4.0) is True and not identity_rows.add_group("empty", 5)
    assert identity_rows.users() == [("alice", ["ops", "shop"], 1.0), ("bob", ["shop"], 3.0)]
    assert identity_rows.groups() == [("empty", []), ("ops", ["alice"]),
                                      ("shop", ["alice", "bob"])]
    assert identity_rows.user_groups("alice") == ["ops", "shop"]
    assert identity_rows.user_groups("nobody") is None
    assert identity_rows.counts() == (2, 3, 0)
    assert identity_rows.remove_user("alice") and not identity_rows.remove_user("alice")
    assert identity_rows.groups()[2] == ("shop", ["bob"])


def test_tokens_are_found_by_digest_and_revoked_once(identity_rows: IdentityRows) -> None:
    row = TokenRow("tok_1", "d" * 64, "alice", "developer", 1.0, None, None)
    identity_rows.add_token(row)
    assert identity_rows.token("d" * 64) == row
    assert identity_rows.token("e" * 64) is None
    assert identity_rows.counts()[2] == 1
    assert identity_rows.revoke_token("tok_1", 9.0) is True
    assert identity_rows.revoke_token("tok_1", 10.0) is False
    assert identity_rows.tokens()[0].revoked == 9.0
    assert identity_rows.counts()[2] == 0


def test_concurrent_user_adds_do_not_fail(identity_rows: IdentityRows) -> None:
    """Eight threads adding one user to groups at once: one creates it, none errors."""
    created: list[bool] = []
    threads = [threading.Thread(target=lambda i=i: created.append(
        identity_rows.add_user("carol", [f"g{i % 2}"], float(i)))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert created.count(True) == 1
    assert identity_rows.user_groups("carol") == ["g0", "g1"]


def test_identities_over_the_rows(identity_rows: IdentityRows) -> None:
    """A token is shown once, stored as its sha256 only, expires and can be revoked;
    identities count as enabled from the first user on."""
    ids = Identities(identity_rows)
    assert not ids.enabled
    token, row = ids.create_token("deploy-bot", Role.developer, expires_in=60, now=100.0)
    assert ids.enabled and token.startswith("skf_")
    assert row.digest == digest(token) and token not in repr(identity_rows.tokens())
    who = ids.authenticate_token(token, now=130.0)
    assert who is not None and who.name == "user:deploy-bot" and who.role is Role.developer
    with pytest.raises(TokenExpired) as err:
        ids.authenticate_token(token, now=161.0)
    assert err.value.status == 401 and "expired" in err.value.message
    assert ids.authenticate_token("skf_unknown") is None
    assert ids.revoke(row.id)
    with pytest.raises(Unauthorized) as err:
        ids.authenticate_token(token, now=130.0)
    assert err.value.code == "token_revoked"
    ids.add_user("alice", ["shop"])
    assert ids.owner_known("user:alice") and ids.owner_known("group:shop")
    assert not ids.owner_known("group:nope") and not ids.owner_known("alice@example.com")
    assert ids.owners() == ["user:alice", "user:deploy-bot", "group:shop"]
