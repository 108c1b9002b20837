"""What a deploy asks for beyond what its app had (pure), and the approval rows'
contract on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from skiff.governance.approvals import (
    ApprovalRow,
    ApprovalRows,
    PostgresApprovalRows,
    SQLiteApprovalRows,
    requested,
    scopes,
)
from skiff.manifest import parse_manifest
from tests.postgres import pg_database  # noqa: F401 - a fixture


def _m(**spec):
    return parse_manifest({"apiVersion": "skiff.dev/v1", "kind": "MicroApp",
                           "metadata": {"name": "a"}, "spec": {"handler": "h:h", **spec}},
                          source="test")


@pytest.mark.parametrize(("old", "new", "wanted"), [
    (None, {}, []),
    (None, {"egress": ["api.x.com"]}, ["egress:api.x.com"]),
    ({"egress": ["api.x.com"]}, {"egress": ["api.x.com", "b.y.com:443"]}, ["egress:b.y.com:443"]),
    ({"egress": ["api.x.com"]}, {}, []),
    (None, {"secrets": [{"name": "K", "ref": "secret://k#2"}]}, ["secret:k"]),
    ({"secrets": [{"name": "K", "ref": "secret://k"}]},
     {"secrets": [{"name": "K", "ref": "secret://k#3"}]}, []),
    (None, {"isolation": "standard"}, ["isolation:standard"]),
    ({"isolation": "standard"}, {"isolation": "none"}, ["isolation:none"]),
    ({"isolation": "none"}, {"isolation": "strict"}, []),
    (None, {"routes": [{"host": "Shop.Example.com"}]}, ["route:shop.example.com"]),
    (None, {"routes": [{"path": "/shop"}]}, []),
])
def test_requested_scopes(old, new, wanted) -> None:
    assert requested(_m(**new), _m(**old) if old is not None else None, set()) == wanted


def test_approved_scopes_are_not_asked_again() -> None:
    new = _m(egress=["api.x.com", "b.y.com"])
    assert requested(new, None, {"egress:api.x.com"}) == ["egress:b.y.com"]
    assert scopes(None) == set()


@pytest.fixture(params=["sqlite", "postgres"])
def rows(request: pytest.FixtureRequest, tmp_path: Path):
    made: ApprovalRows = (PostgresApprovalRows(request.getfixturevalue("pg_database"))
                          if request.param == "postgres"
                          else SQLiteApprovalRows(tmp_path / "governance.db"))
    yield made
    made.close()


def test_a_request_is_decided_once_and_approved_scopes_stay_per_app(rows: ApprovalRows) -> None:
    row = ApprovalRow("apr_1", "shop", "user:alice", ("egress:a.com", "secret:k"), 1.0,
                      "pending", None, None, "", "/tmp/x")
    rows.add(row)
    assert rows.get("apr_1") == row and rows.list("pending") == [row]
    assert rows.decide("apr_1", "approved", "user:olga", 2.0, "ok") is True
    assert rows.decide("apr_1", "denied", "user:oscar", 3.0, "no") is False
    decided = rows.get("apr_1")
    assert (decided.state, decided.decided_by, decided.reason) == ("approved", "user:olga", "ok")
    assert rows.list("pending") == [] and rows.list(None) == [decided]
    rows.remember("shop", row.scopes, "user:olga", 2.0)
    rows.remember("shop", ("egress:a.com",), "user:olga", 4.0)  # again: no error
    assert rows.approved("shop") == {"egress:a.com", "secret:k"}
    assert rows.approved("other") == set()
    rows.forget("shop")
    assert rows.approved("shop") == set()
