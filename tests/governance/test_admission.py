"""The deploy gate in-process: the embedded default lets everything through as
before; with identities, owners decide who may deploy over what; the policy set
loads from files, fails closed when it cannot, and re-evaluates running apps."""

from __future__ import annotations

from pathlib import Path

import pytest

from skiff.errors import SkiffError
from skiff.governance import BOOTSTRAP, Governor, Identities, Limits, Principal, Role
from skiff.governance.audit import SQLiteAuditLog
from skiff.governance.identity_rows import SQLiteIdentityRows
from skiff.manifest import Manifest, parse_manifest


def manifest(name: str, owner: str | None, **spec: object) -> Manifest:
    meta: dict = {"name": name}
    if owner:
        meta["owner"] = owner
    return parse_manifest({"apiVersion": "skiff.dev/v1", "kind": "MicroApp", "metadata": meta,
                           "spec": {"handler": "app:handler", **spec}}, source="test",
                          base_dir=Path("."))


@pytest.fixture
def gov(tmp_path: Path):  # noqa: ANN201
    running: dict = {}
    logged: list[tuple[str, str]] = []
    rows = SQLiteIdentityRows(tmp_path / "governance.db")
    audit = SQLiteAuditLog(tmp_path / "governance.db")
    g = Governor(Identities(rows), audit, policy_dir=tmp_path / "policies", limits=Limits(),
                 secret_exists=lambda name: name == "db",
                 running=lambda: running, log_app=lambda app, rev, line: logged.append((app, line)))
    g.running, g.logged = running, logged  # type: ignore[attr-defined]
    yield g
    rows.close()
    audit.close()


def dev(user: str, *groups: str) -> Principal:
    return Principal(f"user:{user}", Role.developer, user=user, groups=frozenset(groups))


def test_the_embedded_default_admits_free_text_and_missing_owners(gov: Governor) -> None:
    """Only the bootstrap admin, no identities: owners are not checked (as before)."""
    assert not gov.identities.enabled
    for owner in ("team@example.com", None):
        assert gov.admit(manifest("a", owner), actor=None, current=None).verdict == "allowed"
    # the built-in pack still applies: a secret ref that does not exist
    with pytest.raises(SkiffError) as err:
        gov.admit(manifest("a", None, secrets=[{"name": "X", "ref": "secret://nope"}]),
                  actor=BOOTSTRAP, current=None)
    assert err.value.code == "policy_denied" and "builtin.secret-refs-exist" in err.value.message


def test_owners_with_identities(gov: Governor) -> None:
    gov.identities.add_user("alice", ["shop"])
    gov.identities.add_user("bob", ["web"])
    alice, bob = dev("alice", "shop"), dev("bob", "web")
    shop = manifest("shop", "group:shop")
    assert gov.admit(shop, actor=alice, current=None).verdict == "allowed"
    with pytest.raises(SkiffError) as err:
        gov.admit(manifest("shop", "group:web"), actor=bob, current=shop)
    assert (err.value.status, err.value.code, err.value.details["owner"]) == (
        409, "owner_conflict", "group:shop")
    with pytest.raises(SkiffError) as err:
        gov.may_remove(bob, shop, "delete")
    assert (err.value.status, err.value.code) == (403, "not_owner")
    # an app deployed before identities has no owner: operators only
    with pytest.raises(SkiffError) as err:
        gov.admit(manifest("old", "group:shop"), actor=alice, current=manifest("old", None))
    assert err.value.code == "owner_conflict" and "only an operator" in err.value.message
    operator = Principal("user:olga", Role.operator, user="olga")
    handed = gov.admit(manifest("shop", "group:web", secrets=[{"name": "X", "ref": "secret://db"}]),
                       actor=operator, current=shop)
    assert handed.owner_change == ("group:shop", "group:web")
    assert "skiff secrets rotate db" in handed.result()["owner_changed"]["message"]


def test_policy_files_load_fail_closed_and_reevaluate(gov: Governor, tmp_path: Path) -> None:
    """A file that does not load refuses every deploy with its place; fixed, the set
    reloads; a change re-evaluates running apps and tells their logs."""
    gov.running["live"] = ("r1", manifest("live", None))  # type: ignore[attr-defined]
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "a.yaml").write_text("id: label\nmessage: m\nexpression: 'input.app =='\n")
    with pytest.raises(SkiffError) as err:
        gov.admit(manifest("x", None), actor=None, current=None)
    assert err.value.code == "policy_load_failed" and f"{policies / 'a.yaml'}:3" in err.value.message
    assert gov.violations()[0]["policy"] == "policies"
    (policies / "a.yaml").write_text(
        "- {id: named-live, enforcement: audit, message: no app named live, "
        "expression: 'input.app != \"live\"'}\n"
        "- {id: other, message: m, expression: 'true'}\n")
    assert gov.admit(manifest("x", None), actor=None, current=None).verdict == "allowed"
    assert [(v["app"], v["policy"]) for v in gov.reevaluate()] == [("live", "named-live")]
    assert any("named-live" in line for _, line in gov.logged)  # type: ignore[attr-defined]
    with pytest.raises(SkiffError) as err:  # one of several in a file: edit the file
        gov.remove("other", actor=BOOTSTRAP)
    assert err.value.code == "policy_in_file" and err.value.status == 409
    with pytest.raises(SkiffError) as err:
        gov.apply("id: builtin.ttl-max\nmessage: m\nexpression: 'true'\n", actor=BOOTSTRAP)
    assert err.value.code == "invalid_policy"
    with pytest.raises(SkiffError) as err:
        gov.apply("id: mine\nmessage: m\nexpression: 'true'\n", actor=dev("alice"))
    assert err.value.code == "role_required"
    gov.apply("id: mine\nmessage: m\nexpression: 'true'\n", actor=BOOTSTRAP)
    assert "mine" in {p.id for p in gov.policies()}
    gov.remove("mine", actor=BOOTSTRAP)
    assert not (policies / "mine.yaml").exists()
    assert [(e.actor, e.action, e.decision) for e in gov.audit.query()] == [
        ("admin", "policy.rm", "denied"), ("admin", "policy.apply", "denied"),
        ("user:alice", "policy.apply", "denied"), ("admin", "policy.apply", "allowed"),
        ("admin", "policy.rm", "allowed")]
